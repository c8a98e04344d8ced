// Mirror.sync({ signal }): an AbortSignal cancels the run the engine's way (it stops after the
// work in flight, nothing is rolled back) and the promise rejects with an AbortError.
'use strict'

const { after, test } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const { getEventListeners } = require('node:events')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const { Mirror, ErrorCode } = require('..')

const MAKE_LAYOUT = path.join(__dirname, '..', '..', 'scripts', 'make-test-layout.sh')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regmirror-node-'))
after(() => fs.rmSync(dir, { recursive: true, force: true }))

// A source on loopback that accepts connections and never answers; `connected` resolves at the
// first connection.
async function silentSource(t) {
  const sockets = new Set()
  let connected
  const firstConnection = new Promise((resolve) => (connected = resolve))
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    connected()
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.close()
    for (const socket of sockets) socket.destroy()
  })
  return { source: `127.0.0.1:${server.address().port}/app`, firstConnection, sockets }
}

// The bound only turns an abort that does nothing into a failure instead of a hung suite.
test('aborting a sync that waits on its source rejects with an AbortError carrying the report', { timeout: 60_000 }, async (t) => {
  const { source, firstConnection } = await silentSource(t)
  // Far beyond the test's life: only the abort can end this run.
  const mirror = new Mirror({ source, to: `oci:${dir}/waits`, tags: 'v*', sourceTlsVerify: false, timeoutSeconds: 3600 })
  const controller = new AbortController()
  const syncing = mirror.sync({ signal: controller.signal })
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1)
  await firstConnection
  const reason = new Error('the user gave up')
  controller.abort(reason)
  const err = await syncing.then(
    (report) => assert.fail(`resolved: ${JSON.stringify(report)}`),
    (e) => e,
  )
  assert.ok(err instanceof Error)
  assert.equal(err.name, 'AbortError')
  assert.equal(err.code, ErrorCode.Cancelled)
  assert.equal(err.cause, reason)
  assert.match(err.message, /cancelled/)
  assert.equal(err.report.outcome, 'cancelled')
  assert.deepEqual(err.report.tagsSynced, [])
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
})

test('an already aborted signal rejects at once without running', async (t) => {
  const { source, sockets } = await silentSource(t)
  const mirror = new Mirror({ source, to: `oci:${dir}/never`, tags: 'v*', sourceTlsVerify: false })
  const signal = AbortSignal.abort()
  await assert.rejects(mirror.sync({ signal }), (err) => {
    assert.equal(err.name, 'AbortError')
    assert.equal(err.code, 'Cancelled')
    assert.equal(err.cause, signal.reason)
    assert.equal(err.report, undefined)
    return true
  })
  assert.equal(sockets.size, 0, 'the source was contacted')
  assert.equal(fs.existsSync(`${dir}/never`), false)
  assert.equal(getEventListeners(signal, 'abort').length, 0)
})

test('a signal that does not abort leaves the sync alone and keeps no listener', async () => {
  const source = path.join(dir, 'layout')
  execFileSync('bash', [MAKE_LAYOUT, source, 'v1'])
  const controller = new AbortController()
  const mirror = new Mirror({ source: `oci:${source}`, to: `oci:${dir}/copy`, tags: 'v*' })
  for (let i = 0; i < 12; i++) {
    const report = await mirror.sync({ signal: controller.signal })
    assert.equal(report.outcome, 'success', report.error)
  }
  // An abort after the runs ended changes nothing.
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
  controller.abort()
  assert.equal((await mirror.sync()).outcome, 'success')
})

test('a signal that is not an AbortSignal is refused', () => {
  const mirror = new Mirror({ source: 'oci:/tmp/a', to: 'oci:/tmp/b', tags: 'v*' })
  assert.throws(() => mirror.sync({ signal: new AbortController() }), /must be an AbortSignal/)
})
