// Finding literal tokens (added / special tokens) in a text, in time linear in the text and in the total
// length of the tokens, whatever the number and length of the tokens.
//
// `longestAt(text)` gives, for every position i, the longest token that starts at i. It is an Aho-Corasick
// automaton over the REVERSED tokens run over the text from its end: after reading text[i..] backwards, the
// automaton state is the longest suffix of what was read (= prefix of text[i..] read forwards) that is a
// prefix of a reversed token, and the first token on its suffix-link chain is the longest token that starts
// at i. Scanning that table left to right and jumping over each match gives the leftmost-longest
// non-overlapping matches of Hugging Face tokenizers' added vocabulary (aho-corasick MatchKind::LeftmostLongest),
// which is also what a regex alternation of the tokens sorted longest first finds.
//
// Memory: typed arrays only, no object per node: about 25 bytes per code unit of the tokens (up to ~40
// while it is built), and 4 bytes per code unit of the text per call.

/** Code units are compared as they are; patterns must be non-empty. A repeated pattern: the last one counts. */
export class LiteralMatcher {
  readonly patterns: readonly string[]
  // Node 0 is the root; the edges of the root are a direct table. Every other node has one incoming edge
  // (parent, char): an open-addressing hash of those edges holds the child only, checked by its parent/chr.
  private readonly rootNext = new Int32Array(65536)
  private readonly table: Int32Array // 0: empty slot, else a child node
  private readonly mask: number
  private readonly parent: Int32Array
  private readonly chr: Uint16Array
  private readonly fail: Int32Array
  /** node -> index of the longest pattern that is a suffix of the node's string, -1 if none */
  private readonly out: Int32Array

  constructor(patterns: readonly string[]) {
    this.patterns = patterns
    let total = 0
    for (let k = 0; k < patterns.length; k++) total += patterns[k]!.length
    const maxNodes = total + 1
    let cap = 16
    while (cap < maxNodes + (maxNodes >> 1)) cap *= 2 // load factor at most 2/3
    const mask = cap - 1
    const table = new Int32Array(cap)
    const rootNext = this.rootNext
    const parent = new Int32Array(maxNodes)
    const chr = new Uint16Array(maxNodes)
    const depth = new Int32Array(maxNodes)
    const term = new Int32Array(maxNodes).fill(-1)
    let nodes = 1
    let maxDepth = 0

    // ---- the trie of the reversed patterns
    for (let k = 0; k < patterns.length; k++) {
      const p = patterns[k]!
      let v = 0
      for (let j = p.length - 1; j >= 0; j--) {
        const c = p.charCodeAt(j)
        let w: number
        if (v === 0) {
          w = rootNext[c]!
          if (w === 0) rootNext[c] = w = nodes++
        } else {
          let s = hash(v, c) & mask
          for (;;) {
            w = table[s]!
            if (w === 0) {
              table[s] = w = nodes++
              break
            }
            if (parent[w] === v && chr[w] === c) break
            s = (s + 1) & mask
          }
        }
        if (depth[w] === 0) {
          // a new node (every other node but the root has depth >= 1)
          parent[w] = v
          chr[w] = c
          depth[w] = depth[v]! + 1
          if (depth[w]! > maxDepth) maxDepth = depth[w]!
        }
        v = w
      }
      term[v] = k // a repeated pattern: the last one is reported
    }
    this.table = table
    this.mask = mask
    this.parent = parent.slice(0, nodes)
    this.chr = chr.slice(0, nodes)

    // ---- suffix links, nodes in order of depth (a counting sort: no recursion, no queue of objects)
    const count = new Int32Array(maxDepth + 2)
    for (let v = 0; v < nodes; v++) count[depth[v]! + 1]!++
    for (let d = 1; d < count.length; d++) count[d] += count[d - 1]!
    const order = new Int32Array(nodes)
    for (let v = 0; v < nodes; v++) order[count[depth[v]!]!++] = v
    const fail = (this.fail = new Int32Array(nodes))
    const out = (this.out = new Int32Array(nodes).fill(-1))
    for (let k = 1; k < nodes; k++) {
      const v = order[k]!
      const u = parent[v]!
      const f = u === 0 ? 0 : this.step(fail[u]!, chr[v]!)
      fail[v] = f
      out[v] = term[v]! >= 0 ? term[v]! : out[f]!
    }
  }

  /** The automaton's move from node `v` on code unit `c`: failure links followed until a child by `c` exists (0: the root). */
  private step(v: number, c: number): number {
    for (;;) {
      const g = this.next(v, c)
      if (g > 0 || v === 0) return g
      v = this.fail[v]!
    }
  }

  /** The child of node `v` by code unit `c`, 0 if none. */
  private next(v: number, c: number): number {
    if (v === 0) return this.rootNext[c]!
    const { table, mask, parent, chr } = this
    for (let s = hash(v, c) & mask; ; s = (s + 1) & mask) {
      const w = table[s]!
      if (w === 0 || (parent[w] === v && chr[w] === c)) return w
    }
  }

  /** For every position of `text`, the index of the longest pattern starting there, or -1. */
  longestAt(text: string): Int32Array {
    const best = new Int32Array(text.length)
    const { out } = this
    let v = 0
    for (let j = text.length - 1; j >= 0; j--) {
      v = this.step(v, text.charCodeAt(j))
      best[j] = out[v]!
    }
    return best
  }

  /** The leftmost-longest non-overlapping matches: [start, pattern index] pairs, in text order. */
  *matches(text: string): Generator<[number, number]> {
    const best = this.longestAt(text)
    for (let i = 0; i < text.length; ) {
      const k = best[i]!
      if (k < 0) {
        i++
        continue
      }
      yield [i, k]
      i += this.patterns[k]!.length
    }
  }
}

function hash(v: number, c: number): number {
  return Math.imul(v, 0x9e3779b1) ^ Math.imul(c + 1, 0x85ebca6b)
}
