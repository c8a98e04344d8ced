// The Node tests' services, real ones as the Rust suite's kit (tests/src) starts them: a CNCF
// distribution registry (`docker-registry serve`) and a PostgreSQL cluster, each on a free
// loopback port in a temp dir, stopped by `stop()`; and images pushed into a registry by the
// binding's own one-shot sync from an OCI layout made by scripts/make-test-layout.sh.
'use strict'

const { execFileSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const { Mirror } = require('..')

const ROOT = path.join(__dirname, '..', '..')
const MAKE_LAYOUT = path.join(ROOT, 'scripts', 'make-test-layout.sh')

// Temp dirs made here are removed when the test process exits.
const made = []
process.on('exit', () => made.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })))

function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  made.push(dir)
  return dir
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Poll `ready` until it holds, failing with `describe()` after `ms`.
async function waitFor(what, ready, { ms = 20_000, describe = () => '' } = {}) {
  const deadline = Date.now() + ms
  for (;;) {
    if (await ready()) return
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms ${describe()}`)
    await sleep(30)
  }
}

// A child process whose exit is remembered, stopped by `stop()` (SIGTERM, then SIGKILL).
function start(command, args, options) {
  const child = spawn(command, args, { stdio: ['ignore', options.log, options.log], ...options.spawn })
  const state = { exited: null }
  child.on('exit', (code, signal) => (state.exited = signal || code))
  child.on('error', (err) => {
    state.exited = err.code === 'ENOENT' ? `not installed (${options.install})` : String(err)
  })
  const stop = async () => {
    if (state.exited !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(killer)
  }
  return { child, state, stop }
}

// A plain-HTTP registry: `{ host: '127.0.0.1:PORT', stop() }`.
async function startRegistry() {
  const dir = tempDir('regmirror-node-registry-')
  const port = await freePort()
  const config = path.join(dir, 'config.yml')
  fs.writeFileSync(
    config,
    `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${path.join(dir, 'storage')}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: regmirror-node-test-${port}
`,
  )
  const logPath = path.join(dir, 'registry.log')
  const proc = start('docker-registry', ['serve', config], {
    log: fs.openSync(logPath, 'w'),
    install: 'apt-get install -y docker-registry',
  })
  const host = `127.0.0.1:${port}`
  await waitFor(
    'docker-registry answers /v2/',
    async () => {
      if (proc.state.exited !== null) throw new Error(`docker-registry exited: ${proc.state.exited}\n${fs.readFileSync(logPath, 'utf8')}`)
      try {
        return (await fetch(`http://${host}/v2/`)).status === 200
      } catch {
        return false
      }
    },
    { describe: () => fs.readFileSync(logPath, 'utf8') },
  )
  return {
    host,
    async stop() {
      await proc.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

// PostgreSQL's programs (Debian's /usr/lib/postgresql/VERSION/bin), newest version first.
function postgresBin() {
  const base = '/usr/lib/postgresql'
  const versions = fs.existsSync(base) ? fs.readdirSync(base).sort((a, b) => Number(b) - Number(a)) : []
  const found = versions.map((v) => path.join(base, v, 'bin')).find((bin) => fs.existsSync(path.join(bin, 'initdb')))
  if (!found) throw new Error('PostgreSQL is not installed (apt-get install -y postgresql)')
  return found
}

// A PostgreSQL cluster trusting local connections: `{ url(db), createDatabase(), stop() }`.
// As root, the server runs as the `postgres` user (it refuses to run as root).
async function startPostgres() {
  const bin = postgresBin()
  const dir = tempDir('regmirror-node-postgres-')
  let ids = {}
  if (process.getuid() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }))
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }))
    ids = { uid, gid }
    fs.chownSync(dir, uid, gid)
  }
  const data = path.join(dir, 'data')
  execFileSync(path.join(bin, 'initdb'), ['--auth=trust', '--username=postgres', '--no-sync', '--encoding=UTF8', '-D', data], {
    ...ids,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const port = await freePort()
  const logPath = path.join(dir, 'postgres.log')
  const log = fs.openSync(logPath, 'w')
  if (ids.uid !== undefined) fs.fchownSync(log, ids.uid, ids.gid)
  const proc = start(
    path.join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
    { log, spawn: ids, install: 'apt-get install -y postgresql' },
  )
  const psql = (sql) =>
    execFileSync(path.join(bin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-Atc', sql], {
      stdio: ['ignore', 'pipe', 'ignore'],
      encoding: 'utf8',
    })
  await waitFor(
    'PostgreSQL accepts connections',
    () => {
      if (proc.state.exited !== null) throw new Error(`postgres exited: ${proc.state.exited}\n${fs.readFileSync(logPath, 'utf8')}`)
      try {
        psql('SELECT 1')
        return true
      } catch {
        return false
      }
    },
    { describe: () => fs.readFileSync(logPath, 'utf8') },
  )
  let databases = 0
  return {
    url: (db) => `postgres://postgres@127.0.0.1:${port}/${db}`,
    createDatabase() {
      const name = `node_test_${++databases}`
      psql(`CREATE DATABASE ${name}`)
      return `postgres://postgres@127.0.0.1:${port}/${name}`
    },
    async stop() {
      await proc.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

// Push one small single-platform image per tag into `host/repository` (the same tag always gives
// the same digests); returns the OCI layout it came from.
async function pushImages(host, repository, tags) {
  const layout = path.join(tempDir('regmirror-node-layout-'), 'layout')
  execFileSync('bash', [MAKE_LAYOUT, layout, ...tags])
  const report = await new Mirror({ source: `oci:${layout}`, to: `${host}/${repository}`, tags, destTlsVerify: false }).sync()
  if (report.outcome !== 'success') throw new Error(`seeding ${host}/${repository}: ${report.error}`)
  return layout
}

// A TCP server that accepts connections and never answers (a registry that hangs).
async function silentServer() {
  const sockets = new Set()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    host: `127.0.0.1:${server.address().port}`,
    connections: () => sockets.size,
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(resolve)
      }),
  }
}

module.exports = { ROOT, pushImages, silentServer, sleep, startPostgres, startRegistry, tempDir, waitFor }
