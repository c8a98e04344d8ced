// ErrorCode: the `code` of every error regmirror throws, one per error kind, exported at run time
// and declared in index.d.ts.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { ErrorCode, TagFilter } = require('..')

test('ErrorCode names every error kind after itself', () => {
  const codes = Object.keys(ErrorCode)
  // The native module has one code per error kind (checked against the core's list when it is
  // compiled); InvalidConfig and Internal are the first and the last.
  assert.equal(codes[0], 'InvalidConfig')
  assert.equal(codes[codes.length - 1], 'Internal')
  for (const code of codes) {
    assert.equal(ErrorCode[code], code)
  }
})

test('index.d.ts declares ErrorCode with exactly the run-time codes', () => {
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')
  const body = dts.match(/export declare enum ErrorCode \{([^}]*)\}/)
  assert.ok(body, 'index.d.ts declares no (non-const) enum ErrorCode')
  const declared = [...body[1].matchAll(/^\s*(\w+) = '(\w+)',$/gm)].map((m) => [m[1], m[2]])
  assert.deepEqual(declared, Object.entries(ErrorCode))
})

test('thrown errors carry a code from ErrorCode', () => {
  assert.throws(() => new TagFilter('v3.[12'), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, ErrorCode.InvalidPattern)
    return true
  })
})
