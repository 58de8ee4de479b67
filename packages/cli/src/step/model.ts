// refgpt step: one real forward pass, traced, turned into stages (tui.ts shows them one at a time, --all
// prints them, html.ts writes the page). The stages are built in core (packages/core/src/trace/step.ts,
// `stepThrough`), where the browser demo's step-through view uses the same code.

import { stepThrough } from '@refgpt/core'

export const {
  MAX_TOKENS, LENS_POSITIONS, LENS_BUDGET, LENS_TOP, defaultLensPositions, topK, pieceText, sparkline, attnBar, showPiece, fmtTop, runStages, renderStage,
} = stepThrough
export type Guess = stepThrough.Guess
export type Stage = stepThrough.Stage
export type LensGrid = stepThrough.LensGrid
export type StepRun = stepThrough.StepRun
export type StepOptions = stepThrough.StepOptions
