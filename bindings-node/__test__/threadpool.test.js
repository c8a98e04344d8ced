// Mirror.sync() runs on regmirror's own runtime: syncs in flight leave Node's libuv threadpool
// (fs, dns.lookup, crypto; 4 threads by default) free.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const { Mirror } = require('..')

test('syncs in flight do not hold up fs calls', async () => {
  // A source on loopback that accepts connections and never answers.
  const sockets = new Set()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const source = `127.0.0.1:${server.address().port}/app`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regmirror-node-'))
  try {
    let settled = 0
    const syncs = [1, 2, 3, 4, 5].map((i) =>
      new Mirror({ source, to: `oci:${dir}/${i}`, tags: 'v*', sourceTlsVerify: false, timeoutSeconds: 5 })
        .sync()
        .finally(() => settled++),
    )
    // More syncs than libuv threads, all waiting on the source: a file can still be read.
    await fs.promises.readFile(__filename)
    assert.equal(settled, 0, 'the file was read only once the syncs had ended')
    server.close()
    for (const socket of sockets) socket.destroy()
    const reports = await Promise.all(syncs)
    assert.deepEqual(
      reports.map((r) => r.outcome),
      ['failed', 'failed', 'failed', 'failed', 'failed'],
    )
  } finally {
    server.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
