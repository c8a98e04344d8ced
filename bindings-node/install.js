// npm's install step for the `regmirror` package: make sure the native addon for this platform
// is there. A package from `npm pack` (or a registry) ships it, prebuilt in release, and this
// does nothing. A package installed from a clone of the repository (`npm install
// path/to/regmirror/bindings-node`) has none: then this builds it in release with cargo, which
// takes a few minutes the first time, and says what is missing if it cannot.
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const here = __dirname
const workspace = path.join(here, '..', 'Cargo.toml')

function fail(message) {
  console.error(`regmirror: ${message}`)
  process.exit(1)
}

// The suffix napi-rs gives this platform's addon (index.js loads regmirror.<suffix>.node).
function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const report = process.report && process.report.getReport ? process.report.getReport() : null
    const glibc = report && report.header && report.header.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function loads() {
  try {
    require(path.join(here, 'index.js'))
    return true
  } catch (e) {
    return e
  }
}

const loaded = loads()
if (loaded === true) process.exit(0)

const addon = `regmirror.${platformSuffix()}.node`
if (!fs.existsSync(workspace) || !fs.existsSync(path.join(here, 'Cargo.toml'))) {
  const shipped = fs.readdirSync(here).filter((f) => f.endsWith('.node'))
  fail(
    `this package has no native addon for ${platformSuffix()} (it ships ${shipped.join(', ') || 'none'}) ` +
      `and no Rust sources to build one: install from a clone of the repository ` +
      `(npm install path/to/regmirror/bindings-node, with Rust installed). Loading failed with: ${loaded.message}`,
  )
}
const cargo = process.env.CARGO || 'cargo'
if (spawnSync(cargo, ['--version'], { stdio: 'ignore' }).status !== 0) {
  fail(
    `no prebuilt native addon (${addon}) in ${here}, and cargo was not found on PATH to build it: ` +
      `install Rust (https://rustup.rs, cargo 1.88 or newer), then run npm install again`,
  )
}

console.error(`regmirror: building the native addon ${addon} with cargo (release; a few minutes the first time)`)
const build = spawnSync(
  cargo,
  ['build', '--release', '-p', 'regmirror-node', '--message-format=json-render-diagnostics'],
  { cwd: here, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 },
)
if (build.status !== 0) fail(`cargo build --release -p regmirror-node failed (its errors are above)`)
// Cargo's own account of what it built names the library, wherever the target directory is.
const library = build.stdout
  .split('\n')
  .filter((line) => line.startsWith('{'))
  .map((line) => JSON.parse(line))
  .filter((m) => m.reason === 'compiler-artifact' && m.target.name === 'regmirror_node')
  .flatMap((m) => m.filenames)
  .find((f) => /\.(so|dylib|dll)$/.test(f))
if (!library) fail('cargo build succeeded but reported no regmirror_node library')
fs.copyFileSync(library, path.join(here, addon))
const after = loads()
if (after !== true) fail(`built ${addon}, but it does not load: ${after.message}`)
console.error(`regmirror: built ${addon}`)
