// refgpt step --html FILE: the stages as one self-contained page (inline CSS, JS and images; no network).
// The rendering is core's (packages/core/src/trace/step-html.ts, `stepHtml`), shared with the browser
// demo's step-through view; here it gets zlib's deflate for its PNGs, and the page is written to FILE.

import { deflateSync } from 'node:zlib'
import { stepHtml, type Model } from '@refgpt/core'
import { writeUserFile } from '../commands/common.js'
import type { StepRun } from './model.js'

export const { PROB_STOPS, MASKED_RGB, NEG_RGB, POS_RGB, LABEL_MAX, probRgb, probColor, valueRgb, hex, esc, visibleToken, shortLabel } = stepHtml
export type Rgb = stepHtml.Rgb

const deflate = (raw: Uint8Array) => deflateSync(raw)

/** An 8-bit RGB PNG (sRGB, no filtering) of w × h pixels, rgb row-major, as a data: URI (zlib-compressed). */
export const pngDataUri = (w: number, h: number, rgb: Uint8Array) => stepHtml.pngDataUri(w, h, rgb, deflate)

/** The page for one step run (pieces: each id's text; prompt: for the title). */
export function renderHtml(run: StepRun, model: Model, pieces: string[], prompt: string): string {
  return stepHtml.renderStepHtml(run, model, pieces, prompt, { deflate })
}

/** Writes the file atomically: a temp file beside it, then rename (an error names FILE, not the temp file). */
export function writeHtml(file: string, html: string): void {
  writeUserFile(file, html)
}
