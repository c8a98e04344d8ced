// Mirror from JavaScript: one-shot syncs between real OCI image layouts on disk.
'use strict'

const { after, test } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { Mirror } = require('..')

const MAKE_LAYOUT = path.join(__dirname, '..', '..', 'scripts', 'make-test-layout.sh')

// Removed when the tests end.
const tempDirs = []
after(() => tempDirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })))

function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regmirror-node-'))
  tempDirs.push(dir)
  return dir
}

function makeSource(dir) {
  const source = path.join(dir, 'source')
  execFileSync('bash', [MAKE_LAYOUT, source, 'v1.0', 'v1.1', 'v2.0-rc1', 'latest'])
  return source
}

// The layout's tags and the manifest digest each points at.
function layoutTags(dir) {
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'))
  const tags = {}
  for (const m of index.manifests) {
    const name = m.annotations && m.annotations['org.opencontainers.image.ref.name']
    if (name) tags[name] = m.digest
  }
  return tags
}

test('sync copies the selected tags with their digests, then finds them current', async () => {
  const dir = tempDir()
  const source = makeSource(dir)
  const dest = path.join(dir, 'dest')
  const mirror = new Mirror({ source: `oci:${source}`, to: `oci:${dest}`, tags: ['v1.*', '!*-rc*'] })
  const report = await mirror.sync()
  assert.equal(report.outcome, 'success', report.error)
  assert.deepEqual(report.tagsSynced, ['v1.0', 'v1.1'])
  assert.deepEqual(report.tagsFailed, [])
  assert.equal(report.error, undefined)
  assert.equal(report.note, undefined)
  assert.equal(report.blobsCopied, 4) // a config and a layer per tag
  assert.equal(report.referrersCopied, 0)
  const { 'v1.0': a, 'v1.1': b } = layoutTags(source)
  assert.deepEqual(layoutTags(dest), { 'v1.0': a, 'v1.1': b })

  const again = await mirror.sync()
  assert.deepEqual(again.tagsSynced, [])
  assert.deepEqual(again.tagsCurrent, ['v1.0', 'v1.1'])
  assert.equal(again.blobsCopied, 0)
})

test('narrowed patterns prune the destination unless keepUnselected', async () => {
  const dir = tempDir()
  const source = makeSource(dir)
  const to = `oci:${path.join(dir, 'dest')}`
  await new Mirror({ source: `oci:${source}`, to, tags: 'v1.*' }).sync()
  const report = await new Mirror({ source: `oci:${source}`, to, tags: 'v1.0' }).sync()
  assert.deepEqual(report.tagsDeleted, ['v1.1'])
  const kept = await new Mirror({ source: `oci:${source}`, to, tags: 'latest', keepUnselected: true }).sync()
  assert.deepEqual(kept.tagsDeleted, [])
  assert.deepEqual(Object.keys(layoutTags(path.join(dir, 'dest'))).sort(), ['latest', 'v1.0'])
})

test('a run matching no tag succeeds with a note and no error', async () => {
  const dir = tempDir()
  const source = makeSource(dir)
  const report = await new Mirror({ source: `oci:${source}`, to: `oci:${dir}/d`, tags: 'nomatch*' }).sync()
  assert.equal(report.outcome, 'success')
  // `if (report.error) alert()` must not fire on a success.
  assert.equal(report.error, undefined)
  assert.match(report.note, /^no tags matched \(the source has 4 tags/)
})

test('a source that cannot be listed fails the run (reported, not thrown)', async () => {
  const dir = tempDir()
  const report = await new Mirror({ source: `oci:${path.join(dir, 'missing')}`, to: `oci:${dir}/d`, tags: 'v*' }).sync()
  assert.equal(report.outcome, 'failed')
  assert.ok(report.error)
})

test('invalid settings throw with err.code when the mirror is created', () => {
  const base = { source: 'oci:/tmp/a', to: 'oci:/tmp/b', tags: 'v*' }
  const cases = [
    [{ tags: 'v3.[12' }, 'InvalidPattern', /v3\.\[12/],
    [{ tags: [] }, 'InvalidPattern', /empty/],
    [{ source: 'quay.io/app:v1' }, 'InvalidReference', /quay\.io\/app:v1/],
    [{ rollback: 'sometimes' }, 'InvalidConfig', /sometimes/],
    [{ architectures: ['z80'] }, 'InvalidConfig', /architecture/],
    [{ concurrency: 0 }, 'InvalidConfig', /concurrency/],
    [{ referrers: 'signed' }, 'InvalidConfig', /referrers: "signed"/],
    [{ to: 'oci:/tmp/a' }, 'InvalidConfig', /nothing to sync/],
    [{ timeoutSeconds: -1 }, 'InvalidConfig', /timeoutSeconds/],
  ]
  for (const [override, code, message] of cases) {
    assert.throws(() => new Mirror({ ...base, ...override }), { code, message }, JSON.stringify(override))
  }
})

test('the SSRF guard is off by default and, when on, refuses a loopback source', async () => {
  const dir = tempDir()
  const options = { source: '127.0.0.1:9/src/app', to: `oci:${dir}/out`, tags: 'v1' }
  const report = await new Mirror({ ...options, ssrfGuard: true }).sync()
  assert.equal(report.outcome, 'failed')
  assert.match(report.error, /SSRF guard refused 127\.0\.0\.1: 127\.0\.0\.1 is 127\.0\.0\.1 \(loopback\)/)
  assert.match(report.error, /allow-list/)
  assert.throws(() => new Mirror({ ...options, ssrfGuard: true, ssrfAllow: ['10.0.0.0/99'] }), {
    code: 'InvalidConfig',
    message: /ssrfAllow: SSRF guard allow-list entry "10\.0\.0\.0\/99" is not valid/,
  })
  assert.throws(() => new Mirror({ ...options, ssrfAllow: ['127.0.0.1'] }), {
    code: 'InvalidConfig',
    message: /while the guard is off/,
  })
  // Allowed, the address is contacted (nothing listens there): the failure is not the guard's.
  const allowed = await new Mirror({ ...options, ssrfGuard: true, ssrfAllow: ['127.0.0.0/8'] }).sync()
  assert.equal(allowed.outcome, 'failed')
  assert.doesNotMatch(allowed.error, /SSRF guard/)
})

test('maxTags bounds a tag listing and must be positive', () => {
  const options = { source: '127.0.0.1:9/src/app', to: `oci:${tempDir()}/out`, tags: 'v1' }
  assert.ok(new Mirror({ ...options, maxTags: 10 }))
  assert.throws(() => new Mirror({ ...options, maxTags: 0 }), {
    code: 'InvalidConfig',
    message: /max_tags must be greater than 0/,
  })
})

test('a run that cannot start rejects with err.code: a docker config that cannot be parsed', async () => {
  // Read when the run starts (dockerConfig: true), so the constructor cannot see it.
  const dir = tempDir()
  fs.writeFileSync(path.join(dir, 'config.json'), '{"auths": {"127.0.0.1:1": {"auth": "not base64!"}}}')
  const saved = process.env.DOCKER_CONFIG
  process.env.DOCKER_CONFIG = dir
  try {
    const mirror = new Mirror({ source: '127.0.0.1:1/app', to: `oci:${dir}/out`, tags: 'v*', dockerConfig: true })
    await assert.rejects(mirror.sync(), (err) => {
      assert.ok(err instanceof Error)
      assert.equal(err.code, 'InvalidConfig')
      assert.ok(err.message.includes(path.join(dir, 'config.json')), err.message)
      assert.match(err.message, /"auth" of "127\.0\.0\.1:1" is not base64/)
      assert.ok(!err.message.includes('not base64!'), err.message)
      return true
    })
  } finally {
    if (saved === undefined) delete process.env.DOCKER_CONFIG
    else process.env.DOCKER_CONFIG = saved
  }
})

test('getters show the settings, never the credentials', () => {
  const mirror = new Mirror({
    source: '127.0.0.1:5000/app',
    to: 'oci:/tmp/out',
    tags: ['v*'],
    sourceCredentials: { username: 'robot', password: 's3cr3t-pa55' },
  })
  assert.equal(mirror.source, '127.0.0.1:5000/app')
  assert.equal(mirror.to, 'oci:/tmp/out')
  assert.deepEqual(mirror.tags, ['v*'])
  assert.ok(!require('node:util').inspect(mirror).includes('s3cr3t'))
})
