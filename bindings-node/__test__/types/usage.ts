// Type-checked by `npx tsc -p __test__/types` (scripts/test.sh): index.d.ts as a TypeScript user meets it,
// with strict settings and isolatedModules (so ErrorCode must be a real enum, not a const one).
import {
  ErrorCode,
  LogEntry,
  Mirror,
  MirrorChanges,
  MirrorEvent,
  MirrorOptions,
  Mirrors,
  MirrorSettings,
  MirrorView,
  ProgressEvent,
  SyncOptions,
  SyncPreview,
  SyncReport,
  SyncStatus,
  TagFilter,
  WorkerHandle,
  WorkerReport,
} from '../..'

const options: MirrorOptions = {
  source: '127.0.0.1:5000/library/app',
  to: 'oci:./out',
  tags: ['v1.*', '!*-rc*'],
  rollback: 'all_or_nothing',
  platformIndex: 'sparse',
  referrers: 'application/spdx+json',
  sourceTlsVerify: false,
  sourceCredentials: { username: 'robot', password: 'secret' },
  concurrency: 4,
  timeoutSeconds: 60,
  ssrfGuard: true,
  ssrfAllow: ['10.0.0.0/8', 'registry.corp'],
  maxTags: 500000,
  authFile: '/etc/containers/auth.json',
  destCaFile: '/etc/ssl/private-ca.pem',
  sourceCertDir: '/etc/docker/certs.d/127.0.0.1:5000',
  httpsProxy: 'http://proxy.corp:3128',
  noProxy: 'localhost,.corp',
}

function onProgress(event: ProgressEvent): void {
  switch (event.type) {
    case 'tag_finished':
      console.log(event.tag, event.status, event.digest ?? event.error)
      break
    case 'blob_bytes':
      console.log(event.digest, event.done / event.total)
      break
    default:
      console.log(event.type)
  }
}

async function main(): Promise<void> {
  const filter = new TagFilter('v3.*')
  const selected: string[] = filter.select(['v3.1'])
  const ok: boolean = filter.matches('v3.1')
  console.log(selected, ok, filter.patterns)
  try {
    const report: SyncReport = await new Mirror(options).sync()
    const outcome: 'success' | 'failed' | 'cancelled' = report.outcome
    console.log(outcome, report.tagsSynced, report.tagsFailed, report.bytesCopied, report.referrersCopied)
    const failed: string[] = report.tagsFailed.map((f) => `${f.tag}: ${f.reason}`)
    for (const f of report.tagsFailed) {
      if (f.kind === ErrorCode.Unauthorized && f.side === 'source') console.log('check the source login for', f.host)
      if (f.detail === 'sparse_source' || f.phase === 'stage') console.log(f.message)
    }
    if (report.failure?.kind === 'Timeout') console.log('took too long')
    console.log(failed, report.error ?? report.note)
    const plan: SyncPreview = await new Mirror(options).preview({ onProgress })
    for (const tag of plan.tags) {
      const action: 'copy' | 'current' | 'skip' | 'fail' = tag.action
      console.log(tag.tag, action, tag.bytes, tag.digest, tag.reason)
    }
    console.log(plan.bytesToCopy, plan.tagsToDelete)
  } catch (err) {
    if (err instanceof Error && (err as Error & { code?: string }).code === ErrorCode.NotFound) {
      console.log('not found')
    }
  }
  const controller = new AbortController()
  const run: SyncOptions = { signal: controller.signal, onProgress, }
  try {
    await new Mirror(options).sync(run)
    await new Mirror(options).sync({ signal: AbortSignal.timeout(60_000) })
  } catch (err) {
    if (err instanceof Error && err.name === 'AbortError') {
      console.log('aborted')
    }
  }
}

void main()

async function stored(): Promise<void> {
  const events: MirrorEvent[] = []
  const mirrors = new Mirrors({
    state: 'sqlite:/var/lib/regmirror/state.db',
    destination: 'registry.example.com:5000',
    destCredentials: { username: 'robot', password: 'token' },
    destTlsVerify: false,
    notifiers: [
      (event: MirrorEvent) => {
        if (event.event === 'sync_failed') console.log(event.mirrorId, event.error, event.tagsFailed)
        events.push(event)
      },
      async (event) => console.log(event.event, event.bytesCopied),
    ],
    leaseSeconds: 60,
    defaultRollback: 'all_or_nothing',
    retryBackoffSeconds: 30,
  })
  const settings: MirrorSettings = {
    id: 'mirror/app',
    source: 'quay.io/coreos/etcd',
    tags: ['v3.5.*', '!*-rc*'],
    interval: '1h',
    tlsVerify: false,
    architectures: ['amd64'],
    caFile: '/etc/ssl/quay-ca.pem',
    timeout: 600,
  }
  const added: MirrorView = await mirrors.add(settings)
  const status: SyncStatus = added.status
  const updated = await mirrors.update('mirror/app', { interval: '2h', enabled: false, rollback: null })
  console.log(status, updated.syncIntervalSecs, updated.nextRun ?? 'not scheduled', updated.lastReport)
  const changes: MirrorChanges = { tags: 'v3.6.*', timeout: null }
  await mirrors.update('mirror/app', changes)
  const all: MirrorView[] = await mirrors.list()
  console.log(all.map((v) => [v.id, v.status, v.retriesRemaining]))
  await mirrors.enable('mirror/app')
  await mirrors.disable('mirror/app')
  await mirrors.syncNow('mirror/app')
  await mirrors.cancel('mirror/app')
  const log: LogEntry[] = await mirrors.logs('mirror/app', { limit: 10, before: 100 })
  console.log(log.map((e) => `${e.seq} ${e.time} ${e.kind} ${e.tag ?? ''} ${e.message}`))
  const report: SyncReport = await mirrors.sync('mirror/app', { onProgress, signal: AbortSignal.timeout(60_000) })
  const plan: SyncPreview = await mirrors.preview('mirror/app')
  console.log(report.outcome, plan.bytesToCopy)
  const worker: WorkerHandle = mirrors.startWorker({
    pollIntervalSeconds: 30,
    maxConcurrentSyncs: 4,
    shutdownDeadlineSeconds: 30,
    firstRunSpreadSeconds: 180,
  })
  const done: WorkerReport | null = await worker.stop()
  console.log(done?.runs.map((r) => `${r.mirrorId} ${r.outcome ?? 'abandoned'}`), done?.failedPolls)
  await mirrors.delete('mirror/app')
}

void stored()
