// JSON-aware mutations. A parsed JSON value is edited as a tree (replace a value with a boundary value
// or a value of another type, delete or add keys, duplicate keys, splice one subtree over another),
// then written back with `stringify`, which also writes what JSON.parse could never give back:
//   Raw(text)     any text in place of a value (1e400, deep nesting 100,000 levels, a 2 MB array)
//   obj[DUPS]     extra [key, value] pairs written after the object's own keys (duplicate keys)
// Text-level edits (BOM, truncation, NUL, invalid UTF-8, trailing garbage) come last, on the bytes.

import { concat, mutateBytes } from './bytes.mjs'

export class Raw {
  constructor(text) {
    this.text = text
  }
}
export const DUPS = Symbol('duplicate keys')
/** obj[RAW_ENTRIES]: text of more "key": value pairs written after the object's own (e.g. 10,000 tensors). */
export const RAW_ENTRIES = Symbol('raw entries')

const enc = new TextEncoder()

// ---------------------------------------------------------------------------------------------------
// Values that break parsers of numbers, sizes and names

export const BOUNDARY_NUMBERS = [0, -1, 1, 2, 3, 2 ** 31 - 1, 2 ** 31, 2 ** 32, -(2 ** 31), 1e8, 2 ** 53, -(2 ** 53), 2 ** 53 + 2, 0.5, 1.5, -0.5, 1e-7, 1e308, -1e308, 3.14, 1e21, 65535, 65536, 50257]
export const RAW_NUMBERS = ['1e400', '-1e400', '-0', '9007199254740993', '1.0', '2.0e0', '1E2', '0.0000000000000000000001', '123456789012345678901234567890', '2e-1000', '-0.0', '18446744073709551616']
export const BOUNDARY_STRINGS = ['', ' ', '0', '-1', '1e999', 'null', 'true', 'NaN', 'gpt2', 'gpt_neo', 'gptj', 'gpt3', 'F32', 'F16', 'BF16', 'F64', 'I64', 'BOOL',
  '../../../../etc/passwd', '/etc/passwd', '..', '.', 'a/../../b', 'a\u0000b', '\ud800', '\udfff\ud800', '\u202e', '<|endoftext|>', '\u0120', '\ud83d\ude00', '\u0301',
  'x'.repeat(1000), '%s%n%x', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '\r\n', '\t']
const OTHER = () => [null, true, false, [], {}, [0], [[]], { '': null }, [-1, 2 ** 53], ['a', 1, null]]

/** A boundary value of any type (a fresh object each time). */
export function boundaryValue(r) {
  const w = r.int(10)
  if (w < 4) return r.pick(BOUNDARY_NUMBERS)
  if (w < 5) return new Raw(r.pick(RAW_NUMBERS))
  if (w < 8) return r.pick(BOUNDARY_STRINGS)
  return r.pick(OTHER())
}

/** Big texts are made once per process (their content depends only on the arguments). */
const bigCache = new Map()
function cached(key, make) {
  let v = bigCache.get(key)
  if (v === undefined) bigCache.set(key, (v = make()))
  return v
}

/** Nesting `depth` levels deep: [[[...]]] or {"a":{"a":...}} or a mix. */
export function nested(depth, kind) {
  return cached(`nested ${depth} ${kind}`, () => nestedText(depth, kind))
}
function nestedText(depth, kind) {
  if (kind === 'object') return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
  if (kind === 'mixed') return '[{"a":'.repeat(depth >> 1) + '[]' + '}]'.repeat(depth >> 1)
  return '['.repeat(depth) + ']'.repeat(depth)
}

/** A JSON array text of n elements. */
export function hugeArray(r, n) {
  const item = r.pick(['0', '1', '-1', '"a"', 'null', '[]', '{}', '4294967295', '1.5'])
  return cached(`array ${n} ${item}`, () => '[' + (item + ',').repeat(n - 1) + item + ']')
}

function manyKeys(r, n) {
  const v = r.pick(['0', '1', '"x"', 'null'])
  return cached(`keys ${n} ${v}`, () => {
    const parts = new Array(n)
    for (let i = 0; i < n; i++) parts[i] = `"k${i}":${v}`
    return '{' + parts.join(',') + '}'
  })
}

function longString(r) {
  const n = r.pick([4096, 65536, 1 << 20])
  const unit = r.pick(['a', '\u00e9', '\u4e16', '\ud83d\ude00', ' ', '\\u0000', '\\"', '\\\\', '\\ud800'])
  return new Raw(cached(`string ${n} ${unit}`, () => '"' + (unit.startsWith('\\') ? unit : JSON.stringify(unit).slice(1, -1)).repeat(Math.ceil(n / unit.length)) + '"'))
}

// ---------------------------------------------------------------------------------------------------
// Writing

/** JSON text of a value that may hold Raw nodes and duplicate keys. `indent`: pretty-print like HF files. */
export function stringify(v, indent = 0) {
  const out = []
  write(v, out, indent, 0)
  return out.join('')
}

function write(v, out, indent, level) {
  if (v instanceof Raw) {
    out.push(v.text)
    return
  }
  if (v === null || typeof v !== 'object') {
    out.push((typeof v === 'number' && !Number.isFinite(v)) || typeof v === 'bigint' ? String(v) : v === undefined ? 'null' : JSON.stringify(v))
    return
  }
  const nl = indent ? '\n' + ' '.repeat(indent * (level + 1)) : ''
  const end = indent ? '\n' + ' '.repeat(indent * level) : ''
  const sep = indent ? ': ' : ':'
  if (Array.isArray(v)) {
    if (v.length === 0) return void out.push('[]')
    out.push('[')
    v.forEach((x, i) => {
      if (i) out.push(',')
      out.push(nl)
      write(x, out, indent, level + 1)
    })
    out.push(end, ']')
    return
  }
  const entries = Object.entries(v)
  if (v[DUPS]) entries.push(...v[DUPS])
  const rawEntries = v[RAW_ENTRIES]
  if (entries.length === 0 && !rawEntries) return void out.push('{}')
  out.push('{')
  entries.forEach(([k, x], i) => {
    if (i) out.push(',')
    out.push(nl, JSON.stringify(k), sep)
    write(x, out, indent, level + 1)
  })
  if (rawEntries) out.push(entries.length ? ',' : '', rawEntries)
  out.push(end, '}')
}

// ---------------------------------------------------------------------------------------------------
// Picking a place in the tree

/** Arrays and plain objects (not Raw, byte arrays or other class instances, which are leaves). */
const isContainer = (v) => v !== null && typeof v === 'object' && (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)
const keysOf = (v) => (Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v))

/**
 * A random place { parent, key } (parent null: the root), by a random walk from the root that stops
 * at each level with probability `stop`, so shallow fields are picked about as often as deep ones.
 * `prefer(path)` may return a key to steer the walk (e.g. into a tensor's entry of a header).
 */
export function pickPlace(r, root, stop = 0.3) {
  let parent = null, key = null, cur = root
  for (let depth = 0; depth < 64; depth++) {
    if (!isContainer(cur)) break
    const keys = keysOf(cur)
    if (keys.length === 0) break
    if (parent !== null && r.chance(stop)) break
    parent = cur
    key = r.pick(keys)
    cur = cur[key]
  }
  return { parent, key }
}

/** Collects up to `max` container/leaf nodes (for splicing one subtree over another). */
function someNodes(r, root, max = 64) {
  const out = []
  const todo = [root]
  let seen = 0
  while (todo.length && seen < 4096) {
    const v = todo.pop()
    seen++
    if (out.length < max) out.push(v)
    else if (r.chance(0.1)) out[r.int(max)] = v
    if (isContainer(v)) for (const k of keysOf(v)) todo.push(v[k])
  }
  return out
}

/** obj[k] = v as an own property, also for k = "__proto__" (which JSON.parse makes an own key). */
function defineKey(obj, k, v) {
  Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true })
}

function setAt(root, place, value) {
  if (place.parent === null) return value
  if (Array.isArray(place.parent)) place.parent[place.key] = value
  else defineKey(place.parent, place.key, value)
  return root
}

function deleteAt(root, place) {
  if (place.parent === null) return null
  if (Array.isArray(place.parent)) place.parent.splice(place.key, 1)
  else delete place.parent[place.key]
  return root
}

function safeJson(v) {
  try {
    return JSON.stringify(v) ?? ''
  } catch {
    return '' // BigInt values (golden files) or Raw nodes
  }
}

function otherType(r, v) {
  if (typeof v === 'number') return r.pick([String(v), [v], { value: v }, v !== 0, null])
  if (typeof v === 'string') return r.pick([Number(v) || 0, [v], { content: v }, v.length > 0, null, v.split('')])
  if (typeof v === 'boolean') return r.pick([v ? 1 : 0, String(v), null, [v]])
  if (v === null) return r.pick([0, '', false, [], {}])
  if (Array.isArray(v)) return r.pick([Object.fromEntries(v.map((x, i) => [String(i), x])), v.length, v.join(' '), v[0] ?? null, [v]])
  if (v === undefined || v instanceof Raw) return r.pick([0, '', null, [], {}])
  return r.pick([Object.values(v), Object.keys(v), safeJson(v).slice(0, 200), 1, null, [v]])
}

// ---------------------------------------------------------------------------------------------------
// Tree mutations: each takes (r, root, place, ctx) and returns the new root

const KEY_NAMES = ['', '__proto__', 'constructor', 'a\u0000b', '\ud800', 'x'.repeat(300), '../x', 'model_type', 'weight_map', 'dtype', 'shape', 'data_offsets', '__metadata__', 'vocab', 'merges', 'type']

export const TREE_OPS = {
  boundary: (r, root, p) => setAt(root, p, boundaryValue(r)),
  wrongType: (r, root, p) => setAt(root, p, otherType(r, p.parent === null ? root : p.parent[p.key])),
  delete: (r, root, p) => deleteAt(root, p),
  addKey: (r, root, p, ctx) => {
    const obj = p.parent && !Array.isArray(p.parent) ? p.parent : isContainer(root) && !Array.isArray(root) ? root : null
    if (!obj) return setAt(root, p, boundaryValue(r))
    const k = r.chance(0.6) && ctx.keys.length ? r.pick(ctx.keys) : r.pick(KEY_NAMES)
    defineKey(obj, k, r.chance(0.5) ? boundaryValue(r) : structuredCloneSafe(r.pick(someNodes(r, root, 16))))
    return root
  },
  duplicateKey: (r, root, p) => {
    const obj = p.parent && !Array.isArray(p.parent) ? p.parent : isContainer(root) && !Array.isArray(root) ? root : null
    if (!obj || Object.keys(obj).length === 0) return setAt(root, p, boundaryValue(r))
    const k = r.pick(Object.keys(obj))
    ;(obj[DUPS] ??= []).push([k, r.chance(0.5) ? boundaryValue(r) : structuredCloneSafe(obj[k])])
    return root
  },
  renameKey: (r, root, p) => {
    if (!p.parent || Array.isArray(p.parent)) return setAt(root, p, boundaryValue(r))
    const v = p.parent[p.key]
    delete p.parent[p.key]
    defineKey(p.parent, r.chance(0.5) ? r.pick(KEY_NAMES) : r.pick(BOUNDARY_STRINGS), v)
    return root
  },
  deepNesting: (r, root, p) => setAt(root, p, new Raw(nested(r.pick([3500, 3500, 100000]), r.pick(['array', 'object', 'mixed'])))),
  hugeArray: (r, root, p) => setAt(root, p, new Raw(hugeArray(r, r.weighted([[3, 65536], [2, 100000], [1, 300000]])))),
  manyKeys: (r, root, p) => setAt(root, p, new Raw(manyKeys(r, r.weighted([[3, 10000], [1, 100000]])))),
  longString: (r, root, p) => setAt(root, p, longString(r)),
  rawNumber: (r, root, p) => setAt(root, p, new Raw(r.pick(RAW_NUMBERS))),
  splice: (r, root, p) => setAt(root, p, structuredCloneSafe(r.pick(someNodes(r, root)))),
  swap: (r, root, p) => {
    if (!p.parent) return root
    const keys = keysOf(p.parent)
    const k2 = r.pick(keys)
    const t = p.parent[p.key]
    setAt(root, p, p.parent[k2])
    setAt(root, { parent: p.parent, key: k2 }, t)
    return root
  },
  nudge: (r, root, p) => {
    const v = p.parent === null ? root : p.parent[p.key]
    if (typeof v !== 'number') return setAt(root, p, r.pick(BOUNDARY_NUMBERS))
    return setAt(root, p, r.pick([v + 1, v - 1, -v, v * 2, v * 1e6, v + 0.5, Math.floor(v / 2), 0]))
  },
}
/** Mutation weights: cheap structural edits dominate, huge inputs are rarer. */
const TREE_WEIGHTS = [[10, 'boundary'], [5, 'wrongType'], [6, 'delete'], [4, 'addKey'], [3, 'duplicateKey'], [3, 'renameKey'], [1, 'deepNesting'],
  [0.5, 'hugeArray'], [0.3, 'manyKeys'], [0.7, 'longString'], [3, 'rawNumber'], [3, 'splice'], [2, 'swap'], [6, 'nudge']]
export const TREE_OP_NAMES = Object.keys(TREE_OPS)

function structuredCloneSafe(v) {
  if (v instanceof Raw) return v
  return v === undefined ? null : structuredClone(v)
}

/** Every key of the tree's objects (at most 256), for addKey. */
function allKeys(root) {
  const out = new Set()
  const todo = [root]
  let n = 0
  while (todo.length && out.size < 256 && n++ < 2048) {
    const v = todo.pop()
    if (!isContainer(v)) continue
    if (!Array.isArray(v)) for (const k of Object.keys(v)) out.add(k)
    for (const k of keysOf(v)) todo.push(v[k])
  }
  return [...out]
}

/**
 * Applies `count` tree mutations to a (cloned) value. `place(r, root)` may choose the place instead of a
 * random walk (targets steer edits into the fields that matter). `force` names one op to use.
 */
export function mutateTree(r, root, { count = r.small(3), place, force } = {}) {
  const tags = []
  const ctx = { keys: allKeys(root) }
  for (let i = 0; i < count; i++) {
    const op = force ?? r.weighted(TREE_WEIGHTS)
    const p = (place && r.chance(0.7) && place(r, root)) || pickPlace(r, root)
    root = TREE_OPS[op](r, root, p, ctx)
    tags.push(`json.${op}`)
  }
  return { value: root, tags }
}

// ---------------------------------------------------------------------------------------------------
// Text-level mutations of a JSON file's bytes

const BAD_UTF8 = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0xfe, 0xff]]

export const TEXT_OPS = {
  bom: (r, d) => concat(new Uint8Array([0xef, 0xbb, 0xbf]), d),
  utf16: (r, d) => {
    const out = new Uint8Array(d.length * 2 + 2)
    out[0] = 0xff
    out[1] = 0xfe
    d.forEach((b, i) => (out[2 + 2 * i] = b))
    return out
  },
  truncate: (r, d) => d.slice(0, r.int(d.length)),
  trailing: (r, d) => concat(d, enc.encode(r.pick([' x', '}', ']', '\u0000', '{}', ',', '\n\n{"a":1}', '/* c */']))),
  nul: (r, d) => {
    const at = r.int(d.length + 1)
    return concat(d.subarray(0, at), new Uint8Array([0]), d.subarray(at))
  },
  badUtf8: (r, d) => {
    // inside a string when possible: after a quote
    let at = r.int(d.length + 1)
    const q = d.indexOf(0x22, at)
    if (q >= 0 && r.chance(0.8)) at = q + 1
    return concat(d.subarray(0, at), new Uint8Array(r.pick(BAD_UTF8)), d.subarray(at))
  },
  empty: () => new Uint8Array(0),
  whitespace: (r, d) => concat(new Uint8Array(r.pick([1, 1000, 1 << 16])).fill(r.pick([0x20, 0x0a, 0x09, 0x0d])), d),
  bytes: (r, d) => mutateBytes(r, d, null, 1).data,
}
export const TEXT_OP_NAMES = Object.keys(TEXT_OPS)

/**
 * A JSON file from a seed value: tree mutations (most of the time), then sometimes a text-level edit.
 * Returns { data, tags }.
 */
export function mutateJsonFile(r, seedValue, { indent = 0, place, force, forceText } = {}) {
  let tags = []
  let value = structuredClone(seedValue)
  if (force || (!forceText && r.chance(0.85))) {
    const m = mutateTree(r, value, { place, force })
    value = m.value
    tags = m.tags
  }
  let data = enc.encode(stringify(value, indent))
  if (forceText || (!force && r.chance(0.2))) {
    const op = forceText ?? r.pick(TEXT_OP_NAMES)
    data = TEXT_OPS[op](r, data)
    tags.push(`text.${op}`)
  }
  return { data, tags }
}

export { cached }
