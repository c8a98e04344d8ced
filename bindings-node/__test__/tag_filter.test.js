// TagFilter from JavaScript: SEMANTICS.md §2, the Quay reference table, and thrown errors.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')

const { TagFilter } = require('..')

const QUAY_TAGS = ['v32', 'v3.1', 'v3.2', 'v3.2-4beta', 'v3.3']

test('Quay reference table', () => {
  const table = [
    ['v3*', ['v3.1', 'v3.2', 'v3.2-4beta', 'v3.3', 'v32']],
    ['v3.*', ['v3.1', 'v3.2', 'v3.2-4beta', 'v3.3']],
    ['v3.?', ['v3.1', 'v3.2', 'v3.3']],
    ['v3.[12]', ['v3.1', 'v3.2']],
    ['v3.[12]*', ['v3.1', 'v3.2', 'v3.2-4beta']],
    ['v3.[!1]*', ['v3.2', 'v3.2-4beta', 'v3.3']],
  ]
  for (const [pattern, expected] of table) {
    assert.deepEqual(new TagFilter(pattern).select(QUAY_TAGS), expected, pattern)
    assert.deepEqual(new TagFilter([pattern]).select(QUAY_TAGS), expected, pattern)
  }
})

test('[^1] is a literal set containing ^', () => {
  assert.deepEqual(new TagFilter('v[^1]').select(['v1', 'v^', 'v2']), ['v1', 'v^'])
})

test('[*] is a literal star', () => {
  assert.deepEqual(new TagFilter('v[*]').select(['v*', 'vx', 'v']), ['v*'])
})

test('a case difference does not match', () => {
  assert.deepEqual(new TagFilter('V3.*').select(QUAY_TAGS), [])
  assert.equal(new TagFilter('v3.*').matches('V3.1'), false)
})

test('patterns match the whole tag', () => {
  const filter = new TagFilter('v3')
  assert.deepEqual(filter.select(QUAY_TAGS), [])
  assert.equal(filter.matches('v3.1'), false)
  assert.equal(filter.matches('v3'), true)
})

test('lists, comma-separated strings and .patterns', () => {
  const filter = new TagFilter(' v3.1 ,, latest ,')
  assert.deepEqual(filter.patterns, ['v3.1', 'latest'])
  assert.deepEqual(new TagFilter(['v3.1', 'latest,v3.3']).patterns, ['v3.1', 'latest', 'v3.3'])
  assert.deepEqual(filter.select(['latest', 'v3.3', 'v3.1', 'latest']), ['latest', 'v3.1'])
})

test('regex, semver and exclusions', () => {
  assert.deepEqual(new TagFilter('regex:v\\d+').select(['v1', 'v12', 'v1.2', 'xv1']), ['v1', 'v12'])
  assert.deepEqual(new TagFilter('semver:>=1.2, <2').select(['1.1.0', 'v1.2.0', '2.0.0', 'x']), ['v1.2.0'])
  assert.deepEqual(new TagFilter(['v*', '!*-rc*']).select(['v1', 'v2-rc1', 'v2']), ['v1', 'v2'])
})

for (const bad of ['v3.[12', 'regex:(', 'semver:>>1']) {
  test(`invalid pattern ${bad} throws InvalidPattern naming it`, () => {
    assert.throws(
      () => new TagFilter(bad),
      (err) => {
        assert.ok(err instanceof Error)
        assert.equal(err.code, 'InvalidPattern')
        assert.ok(err.message.includes(bad), err.message)
        return true
      },
    )
  })
}

test('an unclosed set reports its position', () => {
  assert.throws(() => new TagFilter('ok, v3.[12'), { code: 'InvalidPattern', message: /position 3/ })
})

for (const empty of ['', ' , ', []]) {
  test(`empty pattern list ${JSON.stringify(empty)} throws InvalidPattern`, () => {
    assert.throws(() => new TagFilter(empty), { code: 'InvalidPattern', message: /empty/ })
  })
}

test('wrong argument types throw', () => {
  assert.throws(() => new TagFilter(5))
  assert.throws(() => new TagFilter('v*').select('v1'))
})
