// Text handling exactly as lm-evaluation-harness does it (Python semantics ported with care):
//   wikitextDetokenizer  lm_eval/tasks/wikitext/preprocess_wikitext.py @ a728660 (wikitext_detokenizer)
//   countWords / Bytes   lm_eval/api/task.py @ 72d2638 (count_words: len(re.split(r"\s+", doc)); count_bytes)
//   hellaswagPreprocess  lm_eval/tasks/hellaswag/utils.py @ d27c0c0 (preprocess, process_docs)
//
// Python details that differ from JavaScript and are reproduced here: `\s` and str.strip() use Unicode
// whitespace (str.isspace(): also U+001C..U+001F and U+0085, but not U+FEFF); `.` in a regex matches
// everything except "\n" (JS also stops at "\r", U+2028, U+2029); len(str) counts code points (JS
// .length counts UTF-16 units); str.capitalize() upper-cases the first character and LOWER-cases the rest.

/** Python's Unicode whitespace (str.isspace, re's \s on str patterns). */
const WS = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'
const WS_RUN = new RegExp(`[${WS}]+`)
const S = `[${WS}]*`

/** Python str.strip() (no arguments). */
export function pyStrip(s: string): string {
  return s.replace(new RegExp(`^[${WS}]+|[${WS}]+$`, 'g'), '')
}

/** Python len(str): code points. */
export function pyLen(s: string): number {
  let n = 0
  for (const _ of s) n++
  return n
}

/** Title case of the Latin digraphs (Python's str.title / capitalize), where it differs from upper case. */
const TITLE_DIGRAPH: Record<number, string> = { 0x1c4: '\u01c5', 0x1c5: '\u01c5', 0x1c6: '\u01c5', 0x1c7: '\u01c8', 0x1c8: '\u01c8', 0x1c9: '\u01c8',
  0x1ca: '\u01cb', 0x1cb: '\u01cb', 0x1cc: '\u01cb', 0x1f1: '\u01f2', 0x1f2: '\u01f2', 0x1f3: '\u01f2' }

/**
 * Python str.capitalize() (3.8+): the first character in title case, the rest lower-cased. Title case =
 * upper case except for the Latin digraphs (ǆ -> ǅ) and characters whose upper case is several letters
 * (ß -> Ss, ﬁ -> Fi); Greek letters with a subscript iota (ᾳ -> ᾼ) are not special-cased.
 */
export function pyCapitalize(s: string): string {
  const first = s.codePointAt(0)
  if (first === undefined) return s
  const head = String.fromCodePoint(first)
  let title = TITLE_DIGRAPH[first]
  if (title === undefined) {
    const up = [...head.toUpperCase()]
    title = up[0] + up.slice(1).join('').toLowerCase()
  }
  return title + s.slice(head.length).toLowerCase()
}

/** lm-eval count_words: len(re.split(r"\s+", doc)) — leading / trailing whitespace add an empty "word" each. */
export function countWords(text: string): number {
  return text.split(WS_RUN).length
}

/** lm-eval count_bytes: len(doc.encode("utf-8")). */
export function countBytes(text: string): number {
  return new TextEncoder().encode(text).length
}

const replaceAll = (s: string, a: string, b: string) => s.split(a).join(b)

/** lm-eval's wikitext_detokenizer, step by step (applied to a document's text, "page"). */
export function wikitextDetokenizer(page: string): string {
  let s = page
  // contractions
  s = replaceAll(s, "s '", "s'")
  s = s.replace(/\/' [0-9]\//g, "/'[0-9]/") // (sic: the harness's pattern and replacement are both literal text)
  // number separators
  s = replaceAll(s, ' @-@ ', '-')
  s = replaceAll(s, ' @,@ ', ',')
  s = replaceAll(s, ' @.@ ', '.')
  // punctuation
  s = replaceAll(s, ' : ', ': ')
  s = replaceAll(s, ' ; ', '; ')
  s = replaceAll(s, ' . ', '. ')
  s = replaceAll(s, ' ! ', '! ')
  s = replaceAll(s, ' ? ', '? ')
  s = replaceAll(s, ' , ', ', ')
  // double brackets
  s = s.replace(new RegExp(`\\(${S}([^\\)]*?)${S}\\)`, 'g'), (_m, g: string) => `(${g})`)
  s = s.replace(new RegExp(`\\[${S}([^\\]]*?)${S}\\]`, 'g'), (_m, g: string) => `[${g}]`)
  s = s.replace(new RegExp(`\\{${S}([^}]*?)${S}\\}`, 'g'), (_m, g: string) => `{${g}}`)
  s = s.replace(new RegExp(`"${S}([^"]*?)${S}"`, 'g'), (_m, g: string) => `"${g}"`)
  s = s.replace(new RegExp(`'${S}([^']*?)${S}'`, 'g'), (_m, g: string) => `'${g}'`)
  // miscellaneous
  s = replaceAll(s, '= = = =', '====')
  s = replaceAll(s, '= = =', '===')
  s = replaceAll(s, '= =', '==')
  s = replaceAll(s, ' \u00b0 ', '\u00b0')
  s = replaceAll(s, ' \n', '\n')
  s = replaceAll(s, '\n ', '\n')
  s = replaceAll(s, ' N ', ' 1 ')
  s = replaceAll(s, " 's", "'s")
  return s
}

/** lm-eval hellaswag preprocess(): strip, " [title]" -> ". ", drop [bracketed] spans, "  " -> " ". */
export function hellaswagPreprocess(text: string): string {
  let s = pyStrip(text)
  s = replaceAll(s, ' [title]', '. ')
  s = s.replace(/\[[^\n]*?\]/g, '')
  s = replaceAll(s, '  ', ' ')
  return s
}
