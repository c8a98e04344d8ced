// Type-checked by `npx tsc -p __test__/types` (scripts/test.sh): index.d.ts as a TypeScript user meets it,
// with strict settings and isolatedModules (so ErrorCode must be a real enum, not a const one).
import { ErrorCode, Mirror, MirrorOptions, ProgressEvent, SyncOptions, SyncPreview, SyncReport, TagFilter } from '../..'

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
