// Mirrors against real registries and a real SQLite file / PostgreSQL database: a Node program
// adds two mirrors, runs the worker in-process until both succeed, reads their statuses, hears
// the events in its notifier, previews, sync-nows and cancels a slow mirror, and deletes; the
// `regmirror` CLI on the same SQLite file sees the same mirrors, and the other way round.
// Notifiers that throw, reject or block never fail or stall a sync.
'use strict'

const { after, before, test } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const { Mirrors } = require('..')
const { ROOT, pushImages, silentServer, startPostgres, startRegistry, tempDir, waitFor } = require('./kit')

// The CLI the Rust suite built (scripts/test.sh runs `cargo test --workspace` first), or
// $REGMIRROR_CLI.
const CLI =
  process.env.REGMIRROR_CLI ||
  ['debug', 'release'].map((p) => path.join(ROOT, 'target', 'x86_64-unknown-linux-gnu', p, 'regmirror')).find((p) => fs.existsSync(p))

let source, dest, silent, postgres
before(async () => {
  assert.ok(CLI, 'the regmirror CLI is not built: run `cargo build -p regmirror-cli` or set REGMIRROR_CLI')
  ;[source, dest, silent, postgres] = await Promise.all([startRegistry(), startRegistry(), silentServer(), startPostgres()])
  await pushImages(source.host, 'library/app', ['v1.0', 'v1.1', 'v2.0'])
  await pushImages(source.host, 'library/db', ['v5.0'])
})
after(async () => {
  await Promise.all([source?.stop(), dest?.stop(), silent?.stop(), postgres?.stop()])
})

function cli(...args) {
  return execFileSync(CLI, args, { encoding: 'utf8', env: { ...process.env, REGMIRROR_STATE: '' } })
}

async function destTags(repository) {
  const res = await fetch(`http://${dest.host}/v2/${repository}/tags/list`)
  return res.status === 200 ? (await res.json()).tags.sort() : []
}

const stores = {
  sqlite: () => {
    const dir = tempDir('regmirror-node-')
      return `sqlite:${path.join(dir, 'state.db')}`
  },
  postgres: () => postgres.createDatabase(),
}

for (const [kind, store] of Object.entries(stores)) {
  test(`${kind}: two mirrors run by the in-process worker, events, preview, sync-now and cancel, delete`, { timeout: 120_000 }, async () => {
    const state = store()
    const events = []
    const mirrors = new Mirrors({
      state,
      destination: dest.host,
      destTlsVerify: false,
      notifiers: [(event) => events.push(event)],
      // Renewed every second: a cancel reaches a running sync that soon.
      leaseSeconds: 3,
    })
    const app = await mirrors.add({ id: `${kind}/app`, source: `${source.host}/library/app`, tags: ['v1.*'], interval: '1h', tlsVerify: false })
    assert.equal(app.status, 'NEVER_RUN')
    assert.equal(app.syncIntervalSecs, 3600)
    assert.deepEqual(app.tags, ['v1.*'])
    await mirrors.add({ id: `${kind}/db`, source: `${source.host}/library/db`, tags: 'v5.*', interval: 7200, tlsVerify: false, username: 'reader', password: 'pw-never-shown' })
    const db = await mirrors.get(`${kind}/db`)
    assert.equal(db.sourceUsername, 'reader')
    assert.doesNotMatch(JSON.stringify(db), /pw-never-shown/)

    const plan = await mirrors.preview(`${kind}/app`)
    assert.deepEqual(
      plan.tags.map((t) => [t.tag, t.action]),
      [
        ['v1.0', 'copy'],
        ['v1.1', 'copy'],
      ],
    )
    assert.deepEqual(await destTags(`${kind}/app`), [], 'a preview changes nothing')

    // New mirrors due together run at once instead of spread over minutes.
    const worker = mirrors.startWorker({ pollIntervalSeconds: 0.2, maxConcurrentSyncs: 2, firstRunSpreadSeconds: 0.1 })
    let stopped = false
    try {
      const statuses = async () => Object.fromEntries((await mirrors.list()).map((v) => [v.id, v.status]))
      await waitFor('both mirrors succeed', async () => {
        const s = await statuses()
        return s[`${kind}/app`] === 'SUCCESS' && s[`${kind}/db`] === 'SUCCESS'
      }, { ms: 60_000, describe: () => JSON.stringify(events) })
      assert.deepEqual(await destTags(`${kind}/app`), ['v1.0', 'v1.1'])
      assert.deepEqual(await destTags(`${kind}/db`), ['v5.0'])
      const view = await mirrors.get(`${kind}/app`)
      assert.equal(view.retriesRemaining, 3)
      assert.ok(view.lastFinished && view.nextRun)
      assert.match(view.lastReport, /^succeeded/)

      // The notifier heard both runs, with the webhook's payload.
      await waitFor('both runs notified', () => events.filter((e) => e.event === 'sync_succeeded').length === 2)
      for (const id of [`${kind}/app`, `${kind}/db`]) {
        const of = events.filter((e) => e.mirrorId === id).map((e) => e.event)
        assert.deepEqual(of, ['sync_started', 'sync_succeeded'], id)
      }
      const done = events.find((e) => e.mirrorId === `${kind}/app` && e.event === 'sync_succeeded')
      assert.equal(done.source, `${source.host}/library/app`)
      assert.deepEqual(done.patterns, ['v1.*'])
      assert.deepEqual(done.tagsSynced, ['v1.0', 'v1.1'])
      assert.deepEqual(done.tagsFailed, [])
      assert.ok(done.bytesCopied > 0 && done.durationMs >= 0)
      assert.equal(done.error, undefined)
      const log = await mirrors.logs(`${kind}/app`)
      assert.deepEqual(
        log.map((e) => [e.kind, e.tag]),
        [
          ['sync_succeeded', undefined],
          ['tag_synced', 'v1.1'],
          ['tag_synced', 'v1.0'],
          ['sync_started', undefined],
        ],
      )
      assert.deepEqual(await mirrors.logs(`${kind}/app`, { limit: 1, before: log[1].seq }), [log[2]])
      assert.deepEqual(
        (await mirrors.preview(`${kind}/app`)).tags.map((t) => t.action),
        ['current', 'current'],
      )

      // A slow mirror (its source accepts connections and never answers), disabled so only
      // sync-now runs it; cancelled while it runs.
      await mirrors.add({ id: `${kind}/slow`, source: `${silent.host}/library/slow`, tags: 'v*', tlsVerify: false, enabled: false })
      assert.equal((await mirrors.syncNow(`${kind}/slow`)).status, 'SYNC_NOW')
      await waitFor('the slow mirror runs', async () => (await mirrors.get(`${kind}/slow`)).status === 'SYNCING' && silent.connections() > 0)
      assert.equal((await mirrors.cancel(`${kind}/slow`)).status, 'CANCEL')
      await waitFor('the slow run is cancelled', () => events.some((e) => e.mirrorId === `${kind}/slow` && e.event === 'sync_cancelled'), {
        describe: () => JSON.stringify(events),
      })
      const slow = await mirrors.get(`${kind}/slow`)
      assert.equal(slow.status, 'CANCEL')
      assert.equal(slow.leaseOwner, undefined)

      if (kind === 'sqlite') {
        // Another process on the same file sees the same mirrors and statuses...
        const listed = JSON.parse(cli('mirror', 'list', '--json', '--state', state))
        const ours = await mirrors.list()
        assert.deepEqual(
          listed.map((v) => [v.id, v.status, v.source, v.sync_interval_secs]),
          ours.map((v) => [v.id, v.status, v.source, v.syncIntervalSecs]),
        )
        // ... and one it adds is ours, run by our worker.
        cli('mirror', 'add', `${kind}/cli`, '--source', `${source.host}/library/app`, '--tags', 'v2.*', '--src-tls-verify=false', '--state', state)
        await waitFor('the CLI-added mirror succeeds', async () => (await mirrors.get(`${kind}/cli`)).status === 'SUCCESS', { ms: 60_000 })
        assert.deepEqual(await destTags(`${kind}/cli`), ['v2.0'])
      }

      const report = await worker.stop()
      stopped = true
      const ran = report.runs.map((r) => `${r.mirrorId}:${r.outcome}`).sort()
      assert.ok(ran.includes(`${kind}/app:success`) && ran.includes(`${kind}/db:success`) && ran.includes(`${kind}/slow:cancelled`), ran.join(' '))
      assert.equal(await worker.stop(), null, 'a second stop has nothing more to say')
    } finally {
      if (!stopped) await worker.stop().catch(() => {})
    }

    for (const v of await mirrors.list()) await mirrors.delete(v.id)
    assert.deepEqual(await mirrors.list(), [])
    await assert.rejects(mirrors.get(`${kind}/app`), { code: 'NotFound' })
    if (kind === 'sqlite') assert.deepEqual(JSON.parse(cli('mirror', 'list', '--json', '--state', state)), [])
  })
}

test('Mirrors.sync runs one mirror here and returns its report; progress as for Mirror', async () => {
  const mirrors = new Mirrors({ state: 'memory:', destination: dest.host, destTlsVerify: false })
  await mirrors.add({ id: 'direct/app', source: `${source.host}/library/app`, tags: 'v2.*', tlsVerify: false })
  const progress = []
  const report = await mirrors.sync('direct/app', { onProgress: (e) => progress.push(e.type) })
  assert.equal(report.outcome, 'success', report.error)
  assert.equal(report.mirrorId, 'direct/app')
  assert.deepEqual(report.tagsSynced, ['v2.0'])
  await waitFor('progress arrives', () => progress.includes('tag_finished'))
  assert.equal((await mirrors.get('direct/app')).status, 'SUCCESS')
  await assert.rejects(mirrors.sync('direct/none'), { code: 'NotFound' })
})

test('Mirrors.sync of a slow mirror: cancel() ends it with a cancelled report, an AbortSignal with an AbortError', { timeout: 60_000 }, async () => {
  const mirrors = new Mirrors({ state: 'memory:', destination: dest.host, destTlsVerify: false, leaseSeconds: 3 })
  await mirrors.add({ id: 'slow/direct', source: `${silent.host}/library/slow`, tags: 'v*', tlsVerify: false })
  const controller = new AbortController()
  const running = mirrors.sync('slow/direct', { signal: controller.signal })
  await waitFor('the sync runs', async () => (await mirrors.get('slow/direct')).status === 'SYNCING')
  await mirrors.cancel('slow/direct')
  const report = await running
  assert.equal(report.outcome, 'cancelled')
  assert.equal((await mirrors.get('slow/direct')).status, 'CANCEL')

  const aborted = mirrors.sync('slow/direct', { signal: controller.signal })
  await waitFor('the sync runs again', async () => (await mirrors.get('slow/direct')).status === 'SYNCING')
  controller.abort(new Error('enough'))
  await assert.rejects(aborted, (err) => {
    assert.equal(err.name, 'AbortError')
    assert.equal(err.code, 'Cancelled')
    assert.equal(err.cause.message, 'enough')
    assert.equal(err.report.outcome, 'cancelled')
    return true
  })
})

test('notifiers that throw, reject or block never fail or stall a sync', { timeout: 60_000 }, async () => {
  const warnings = []
  const onWarning = (w) => warnings.push(w)
  process.on('warning', onWarning)
  try {
    const block = (ms) => {
      const until = Date.now() + ms
      while (Date.now() < until);
    }
    const thrown = new Error('notifier bug')
    let blocked = 0
    const mirrors = new Mirrors({
      state: 'memory:',
      destination: dest.host,
      destTlsVerify: false,
      notifiers: [
        () => {
          throw thrown
        },
        async () => Promise.reject(new Error('async notifier bug')),
        () => {
          blocked += 1
          block(2_000)
        },
      ],
    })
    await mirrors.add({ id: 'noisy/app', source: `${source.host}/library/app`, tags: 'v1.0', tlsVerify: false })
    const report = await mirrors.sync('noisy/app')
    assert.equal(report.outcome, 'success', report.error)
    // The engine's clock: the run did not wait for the notifier that blocks the event loop
    // for 2 s per event (two events, started and succeeded).
    assert.ok(report.durationMs < 2_000, `${report.durationMs} ms`)
    await waitFor('both events reached the blocking notifier', () => blocked === 2)
    await waitFor('the failures became warnings', () => warnings.filter((w) => w.name === 'RegmirrorCallbackError').length >= 4)
    const threw = warnings.find((w) => w.message === 'a notifier threw; the sync went on without it')
    assert.equal(threw.cause, thrown)
    assert.ok(warnings.some((w) => w.message === 'a notifier rejected; the sync went on without it' && w.cause.message === 'async notifier bug'))
    assert.equal((await mirrors.get('noisy/app')).status, 'SUCCESS')
  } finally {
    process.off('warning', onWarning)
  }
})

test('invalid options and settings are refused with a clear message', async () => {
  const base = { state: 'memory:', destination: dest.host }
  for (const [options, message] of [
    [{ state: 'mysql://x' }, /^state: /],
    [{ destination: 'https://registry.example.com' }, /^destination: /],
    [{ destination: 'registry.example.com/ns' }, /^destination: .*not host\[:port\]/],
    [{ concurrency: -1 }, /^concurrency: -1 is not a whole number/],
    [{ leaseSeconds: -5 }, /^leaseSeconds: /],
    [{ defaultRollback: 'sometimes' }, /^defaultRollback: .*sometimes/],
  ]) {
    assert.throws(() => new Mirrors({ ...base, ...options }), { code: 'InvalidConfig', message }, JSON.stringify(options))
  }
  const mirrors = new Mirrors(base)
  await assert.rejects(mirrors.add({ id: 'a/b', source: `${source.host}/x`, tags: 'v*', tlsVerifyy: false }), {
    code: 'InvalidConfig',
    message: /unknown field `tlsVerifyy`, expected one of .*`tlsVerify`/,
  })
  await assert.rejects(mirrors.add({ id: 'a/b', source: `${source.host}/x`, tags: 'v[' }), { code: 'InvalidPattern' })
  await assert.rejects(mirrors.add({ id: 'a/b', source: `${source.host}/x`, tags: 'v*', interval: 'soon' }), { code: 'InvalidConfig', message: /"soon" is not a duration/ })
  await mirrors.add({ id: 'a/b', source: `${source.host}/x`, tags: 'v*' })
  await assert.rejects(mirrors.add({ id: 'a/b', source: `${source.host}/x`, tags: 'v*' }), { code: 'Conflict' })
  await assert.rejects(mirrors.update('a/b', { intervall: '1h' }), { code: 'InvalidConfig', message: /unknown field `intervall`/ })
  await assert.rejects(mirrors.update('a/b', { id: 'c/d' }), { code: 'InvalidConfig', message: /id cannot change/ })
  await assert.rejects(mirrors.update('x/y', { interval: '1h' }), { code: 'NotFound' })
  const changed = await mirrors.update('a/b', { interval: '2h', tags: ['v1.*'], rollback: 'all_or_nothing', tlsVerify: false })
  assert.equal(changed.syncIntervalSecs, 7200)
  assert.deepEqual(changed.tags, ['v1.*'])
  assert.equal(changed.rollback, 'all_or_nothing')
  assert.equal(changed.verifyTls, false)
  assert.equal(changed.source, `${source.host}/x`, 'what is not given stays')
  const reset = await mirrors.update('a/b', { rollback: null })
  assert.equal(reset.rollback, 'failed_tags_only', 'null puts a setting back to its default')
  assert.equal(reset.syncIntervalSecs, 7200)
  await assert.rejects(mirrors.logs('a/b', { limit: 1.5 }), { code: 'InvalidConfig', message: /^limit: 1\.5 is not a whole number/ })
  assert.throws(() => mirrors.startWorker({ maxConcurrentSyncs: 0.5 }), { code: 'InvalidConfig', message: /^maxConcurrentSyncs/ })

  // Without a destination, mirrors are managed but not synced.
  const manage = new Mirrors({ state: 'memory:' })
  await manage.add({ id: 'a/b', source: `${source.host}/x`, tags: 'v*' })
  await assert.rejects(manage.sync('a/b'), { code: 'InvalidConfig', message: /no destination/ })
  await assert.rejects(manage.preview('a/b'), { code: 'InvalidConfig', message: /no destination/ })
  // A store that cannot be opened rejects the call that needs it.
  const unreachable = new Mirrors({ state: `sqlite:${path.join(tempDir('regmirror-node-'), 'missing', 'dir', 'state.db')}` })
  await assert.rejects(unreachable.list(), { code: 'InvalidConfig', message: /missing\/dir does not exist/ })
})
