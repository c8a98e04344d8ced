// Mirror against a real registry: preview (dry run), progress callbacks, and callbacks that
// throw, reject or block, which never fail or stall the sync.
'use strict'

const { after, before, test } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const { Mirror } = require('..')
const { pushImages, silentServer, startRegistry, tempDir } = require('./kit')

let registry
before(async () => {
  registry = await startRegistry()
  await pushImages(registry.host, 'library/app', ['v1.0', 'v1.1', 'v2.0'])
})
after(async () => {
  await registry?.stop()
})

function mirrorTo(to, extra = {}) {
  return new Mirror({ source: `${registry.host}/library/app`, to, tags: 'v1.*', sourceTlsVerify: false, destTlsVerify: false, ...extra })
}

function warnings() {
  const seen = []
  const listener = (w) => seen.push(w)
  process.on('warning', listener)
  return { seen, stop: () => process.off('warning', listener) }
}

test('preview says what a sync would copy, changing nothing; after the sync all is current', async () => {
  const mirror = mirrorTo(`${registry.host}/mirror/preview`)
  const plan = await mirror.preview()
  assert.equal(plan.mirrorId, 'mirror/preview')
  assert.equal(plan.source, `${registry.host}/library/app`)
  assert.deepEqual(
    plan.tags.map((t) => [t.tag, t.action]),
    [
      ['v1.0', 'copy'],
      ['v1.1', 'copy'],
    ],
  )
  assert.ok(plan.tags.every((t) => t.bytes > 0 && t.digest.startsWith('sha256:')))
  assert.equal(plan.blobsToCopy, 4)
  assert.equal(plan.bytesToCopy, plan.tags[0].bytes + plan.tags[1].bytes)
  assert.deepEqual(plan.tagsToDelete, [])
  assert.equal(plan.note, undefined)
  const tags = await fetch(`http://${registry.host}/v2/mirror/preview/tags/list`)
  assert.equal(tags.status, 404, 'the preview created nothing')

  const report = await mirror.sync()
  assert.equal(report.outcome, 'success', report.error)
  const again = await mirror.preview()
  assert.deepEqual(
    again.tags.map((t) => [t.tag, t.action, t.bytes]),
    [
      ['v1.0', 'current', 0],
      ['v1.1', 'current', 0],
    ],
  )
  const narrowed = await mirrorTo(`${registry.host}/mirror/preview`, { tags: 'v1.0' }).preview()
  assert.deepEqual(narrowed.tagsToDelete, ['v1.1'])
})

test('a report is a plain object with the CLI --json names in camelCase', async () => {
  const report = await mirrorTo(`oci:${path.join(tempDir('regmirror-node-'), 'out')}`).sync()
  assert.equal(Object.getPrototypeOf(report), Object.prototype)
  assert.deepEqual(Object.keys(report).sort(), [
    'blobsCopied',
    'blobsMounted',
    'blobsPresent',
    'bytesCopied',
    'durationMs',
    'mirrorId',
    'outcome',
    'partial',
    'referrersCopied',
    'rolledBack',
    'source',
    'tagsCurrent',
    'tagsDeleted',
    'tagsFailed',
    'tagsRewritten',
    'tagsSkipped',
    'tagsSynced',
  ])
  assert.deepEqual(JSON.parse(JSON.stringify(report)), report)
})

test('onProgress hears each tag start and finish and the bytes, in order per tag', async () => {
  const events = []
  const report = await mirrorTo(`${registry.host}/mirror/progress`).sync({ onProgress: (e) => events.push(e) })
  assert.equal(report.outcome, 'success', report.error)
  // Events may trail the promise a little.
  while (!events.some((e) => e.type === 'tag_finished' && e.tag === 'v1.1') || events.filter((e) => e.type === 'tag_finished').length < 2) {
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  assert.deepEqual(events[0], { type: 'planned', selected: 2, toCopy: 2 })
  for (const tag of ['v1.0', 'v1.1']) {
    const started = events.findIndex((e) => e.type === 'tag_started' && e.tag === tag)
    const finished = events.findIndex((e) => e.type === 'tag_finished' && e.tag === tag)
    assert.ok(started >= 0 && finished > started, `${tag}: ${JSON.stringify(events)}`)
    assert.equal(events[finished].status, 'synced')
    assert.match(events[finished].digest, /^sha256:/)
  }
  const finished = events.filter((e) => e.type === 'blob_finished')
  assert.equal(finished.length, 4)
  assert.ok(finished.every((e) => e.transfer === 'copied'))
})

test('a progress callback that throws or rejects becomes a warning; the sync succeeds', async () => {
  const w = warnings()
  try {
    const thrown = new Error('callback bug')
    const report = await mirrorTo(`${registry.host}/mirror/throws`).sync({
      onProgress: () => {
        throw thrown
      },
    })
    assert.equal(report.outcome, 'success', report.error)
    assert.deepEqual(report.tagsSynced, ['v1.0', 'v1.1'])
    const rejecting = await mirrorTo(`${registry.host}/mirror/rejects`).sync({ onProgress: async () => Promise.reject(new Error('async bug')) })
    assert.equal(rejecting.outcome, 'success', rejecting.error)
    while (!w.seen.some((x) => x.message.includes('rejected'))) await new Promise((resolve) => setTimeout(resolve, 10))
    const threw = w.seen.find((x) => x.message.includes('threw'))
    assert.equal(threw.name, 'RegmirrorCallbackError')
    assert.equal(threw.message, 'onProgress threw; the sync went on without it')
    assert.equal(threw.cause, thrown)
    assert.equal(w.seen.find((x) => x.message.includes('rejected')).cause.message, 'async bug')
  } finally {
    w.stop()
  }
})

test('a progress callback that blocks the event loop does not stall the sync', async () => {
  const block = (ms) => {
    const until = Date.now() + ms
    while (Date.now() < until);
  }
  let calls = 0
  const started = Date.now()
  const report = await mirrorTo(`${registry.host}/mirror/blocks`).sync({
    onProgress: () => {
      calls += 1
      block(300)
    },
  })
  assert.equal(report.outcome, 'success', report.error)
  // The engine's own clock: the run did not wait for the callbacks (at least two of 300 ms
  // each ran before the promise could settle, as the loop was blocked).
  assert.ok(calls >= 2, `${calls} calls`)
  assert.ok(report.durationMs < 300 * calls, `${report.durationMs} ms for ${calls} calls`)
  assert.ok(Date.now() - started >= 600)
})

test('a failed tag carries its error kind, side and phase as fields', async () => {
  const dir = tempDir('regmirror-node-')
  const layout = path.join(dir, 'layout')
  execFileSync('bash', [path.join(__dirname, '..', '..', 'scripts', 'make-test-layout.sh'), layout, 'v1', 'v2'])
  // v2's layer goes missing from the layout.
  const blob = (digest) => path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length))
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'))
  const v2 = index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === 'v2')
  const manifest = JSON.parse(fs.readFileSync(blob(v2.digest), 'utf8'))
  fs.rmSync(blob(manifest.layers[0].digest))

  const report = await new Mirror({ source: `oci:${layout}`, to: `${registry.host}/failing/app`, tags: 'v*', destTlsVerify: false }).sync()
  assert.equal(report.outcome, 'failed')
  assert.deepEqual(report.tagsSynced, ['v1'])
  assert.equal(report.tagsFailed.length, 1)
  const [failed] = report.tagsFailed
  assert.equal(failed.tag, 'v2')
  assert.equal(failed.kind, 'NotFound')
  assert.equal(failed.side, 'source')
  assert.equal(failed.phase, 'stage')
  assert.equal(failed.host, undefined, 'a layout has no host')
  assert.equal(failed.reason, `NotFound: ${failed.message}`)
  assert.equal(report.failure.kind, 'NotFound')
})

test('invalid settings throw with a clear message naming them', () => {
  const base = { source: `${registry.host}/library/app`, to: 'oci:/tmp/x', tags: 'v*' }
  const cases = [
    [{ concurrency: -1 }, 'InvalidConfig', 'concurrency: -1 is not a whole number of 1 or more'],
    [{ concurrency: 1.5 }, 'InvalidConfig', 'concurrency: 1.5 is not a whole number of 1 or more'],
    [{ maxTags: 2.5 }, 'InvalidConfig', 'maxTags: 2.5 is not a whole number of 1 or more'],
    [{ to: 'quay.io/app:v1' }, 'InvalidReference', /^to: reference "quay\.io\/app:v1" is not valid: it has a tag/],
    [{ source: 'https://quay.io/app' }, 'InvalidReference', /^source: reference "https:\/\/quay\.io\/app" is not valid/],
  ]
  for (const [override, code, message] of cases) {
    assert.throws(() => new Mirror({ ...base, ...override }), { code, message }, JSON.stringify(override))
  }
})

test('a sub-second timeout stops a run against a registry that never answers, and says so', { timeout: 30_000 }, async () => {
  const silent = await silentServer()
  try {
    const options = { source: `${silent.host}/library/app`, to: `oci:${tempDir('regmirror-node-')}/out`, tags: 'v*', sourceTlsVerify: false, timeoutSeconds: 0.5 }
    const report = await new Mirror(options).sync()
    assert.equal(report.outcome, 'failed')
    assert.match(report.error, /^Timeout: the sync took longer than its timeout of 500ms/)
    assert.equal(report.error.split('Timeout').length, 2, `says Timeout once: ${report.error}`)
    assert.equal(report.failure.kind, 'Timeout')
    assert.equal(report.failure.detail, 'run_timeout')
    await assert.rejects(new Mirror(options).preview(), { code: 'Timeout', message: /timeout of 500ms/ })
  } finally {
    await silent.stop()
  }
})

test('CA file, cert dir, auth file and proxies are checked and used', async () => {
  const dir = tempDir('regmirror-node-')
  const out = `oci:${path.join(dir, 'out')}`
  // A proxy that cannot be reached fails the run: the setting is used.
  const proxied = await mirrorTo(out, { httpProxy: 'http://127.0.0.1:9', noProxy: 'example.com' }).sync()
  assert.equal(proxied.outcome, 'failed')
  assert.match(proxied.error, /proxy|127\.0\.0\.1:9|connect/i)
  // Bypassed for the registry's host, it succeeds.
  const bypassed = await mirrorTo(out, { httpProxy: 'http://127.0.0.1:9', noProxy: '127.0.0.1' }).sync()
  assert.equal(bypassed.outcome, 'success', bypassed.error)
  // A missing CA file or auth file is named before anything runs.
  await assert.rejects(mirrorTo(out, { sourceCaFile: path.join(dir, 'missing.pem') }).sync(), { message: /missing\.pem/ })
  fs.writeFileSync(path.join(dir, 'auth.json'), '{"auths": {"127.0.0.1:1": {"auth": "not base64!"}}}')
  await assert.rejects(mirrorTo(out, { authFile: path.join(dir, 'auth.json') }).sync(), { message: /auth\.json/ })
})
