// refgpt serve: an OpenAI-compatible server for one model (serve/server.ts), with continuous batching.

import { basename, resolve } from 'node:path'
import { SHAPES, UsageError, folderKind, loadRandomModel, loadTokenizer, type Model, type Tokenizer } from '@refgpt/core'
import { intOption, parse } from '../args.js'
import { asHttpError, createServe } from '../serve/server.js'
import { CONTEXT_HELP, CONTEXT_OPTIONS, DEFAULT_MODEL, MODEL_OPTIONS, load, modelHelp, modelOptions, requireTokenizer, withLoadProgress } from './common.js'

export const summary = 'an OpenAI-compatible HTTP server (completions, chat, tokenize, metrics) with continuous batching'

export const help = `Usage: refgpt serve [--model DIR|ID] [--host 127.0.0.1] [--port 8080] [--parallel N] [--max-queue M]
                    [--api-key KEY] [--timeout S] [--shutdown-grace S] [--name ID] [model options]
       refgpt serve --shape NAME [--layers N] [--seed N] ...   (random weights of a real shape: load tests)

Serves one model over HTTP, in the shapes of OpenAI's API and llama.cpp's server:
  POST /v1/completions        prompt (a string, strings, token ids), max_tokens (default 16), temperature
                              (0 = greedy; default 1), top_p, top_k, min_p, repetition_penalty, n, stop,
                              seed, stream (server-sent events, then "data: [DONE]"), logprobs N (0..5) with
                              echo (the prompt's token log-probabilities, as lm-eval's local-completions asks)
  POST /v1/chat/completions   ModelScope GPT-3 folders (the kuakua robot): the last user message + "|", run
                              as \`refgpt chat\` does; Hugging Face models have no chat template (400)
  GET  /v1/models   POST /tokenize   POST /detokenize   GET /tokenizer_info
  GET  /health      (200 {"status":"ok"}; 503 while shutting down)   GET /metrics (Prometheus text)
The same options and seed give the text \`refgpt generate\` gives (sampling knobs a request leaves out
take the model's generation_config.json and transformers' defaults, as --do-sample does).

Options:
      --host ADDR            address to listen on (default 127.0.0.1: this machine only)
      --port N               port (default 8080; 0: any free port, printed)
      --parallel N           sequences decoded together, one batched step per token (default 4); a
                             request with n choices holds n of them
      --max-queue M          prompts that may wait for a free sequence (default 64); beyond: 429 with
                             Retry-After
      --api-key KEY          require "Authorization: Bearer KEY" (default: $REFGPT_API_KEY, else none);
                             /health and /metrics stay open
      --timeout S            cancel a request that runs longer (default 600 seconds; 504)
      --shutdown-grace S     on SIGTERM / SIGINT: stop taking requests, let running ones finish for up
                             to S seconds (default 30), cancel the rest, exit 0
      --name ID              the model id /v1/models reports (default: the folder's name)
      --shape NAME           instead of --model: seeded random weights of a real shape, with the GPT-2
                             tokenizer (${Object.keys(SHAPES).filter((k) => k !== 'gptj-6b').join(' | ')}); the text is noise,
                             the speed is the real model's. --layers N keeps N layers, --seed N the weights' seed
${CONTEXT_HELP}${modelHelp('serve')}
Request bodies over 1 MiB get 413; malformed JSON, wrong types, unknown fields and prompts longer than the
context get 400 with OpenAI's error object. docs/serve.md: the endpoints, lm-eval, load balancing.

Example:
  refgpt serve --model ./gpt2 --parallel 8 &
  curl -s localhost:8080/v1/completions -H 'content-type: application/json' \\
       -d '{"prompt": "Hello, I am", "max_tokens": 20, "temperature": 0}'
`

const SERVE_OPTIONS = {
  host: { type: 'string' as const },
  port: { type: 'string' as const },
  parallel: { type: 'string' as const },
  'max-queue': { type: 'string' as const },
  'api-key': { type: 'string' as const },
  timeout: { type: 'string' as const },
  'shutdown-grace': { type: 'string' as const },
  name: { type: 'string' as const },
  shape: { type: 'string' as const },
  layers: { type: 'string' as const },
  seed: { type: 'string' as const },
}

export async function run(argv: string[]): Promise<void> {
  const { values: v, positionals } = parse('serve', argv, { ...MODEL_OPTIONS, ...CONTEXT_OPTIONS, ...SERVE_OPTIONS })
  if (positionals.length) throw new UsageError({ where: 'refgpt serve', what: 'unexpected arguments', found: JSON.stringify(positionals.join(' ')), hint: 'options only; prompts come in HTTP requests' })
  // every option is checked before the model loads
  const host = (v.host as string | undefined) ?? '127.0.0.1'
  if (host.trim() === '') throw new UsageError({ where: 'refgpt serve', what: 'bad --host', expected: 'an address such as 127.0.0.1, 0.0.0.0 or ::1', found: '""' })
  const port = intOption('serve', 'port', v.port as string | undefined, 8080, 0)
  if (port > 65535) throw new UsageError({ where: 'refgpt serve', what: 'bad --port', expected: '0 .. 65535', found: String(port) })
  const parallel = intOption('serve', 'parallel', v.parallel as string | undefined, 4, 1)
  if (parallel > 256) throw new UsageError({ where: 'refgpt serve', what: 'bad --parallel', expected: '1 .. 256', found: String(parallel) })
  const maxQueue = intOption('serve', 'max-queue', v['max-queue'] as string | undefined, 64, 0)
  const timeout = intOption('serve', 'timeout', v.timeout as string | undefined, 600, 1)
  const grace = intOption('serve', 'shutdown-grace', v['shutdown-grace'] as string | undefined, 30, 0)
  const apiKey = (v['api-key'] as string | undefined) ?? process.env.REFGPT_API_KEY ?? null
  if (apiKey !== null && apiKey.trim() === '') throw new UsageError({ where: 'refgpt serve', what: 'empty --api-key', hint: 'leave it out to serve without a key' })
  const mo = modelOptions('serve', v)
  const shape = v.shape as string | undefined
  if (shape !== undefined) {
    if (v.model !== undefined) throw new UsageError({ where: 'refgpt serve', what: 'give one of --model and --shape' })
    if (!Object.hasOwn(SHAPES, shape) || shape === 'gptj-6b')
      throw new UsageError({ where: 'refgpt serve', what: 'unknown --shape', expected: `one of ${Object.keys(SHAPES).filter((k) => k !== 'gptj-6b').join(', ')} (shapes with the GPT-2 vocabulary)`, found: JSON.stringify(shape) })
  } else if (v.layers !== undefined || v.seed !== undefined) throw new UsageError({ where: 'refgpt serve', what: '--layers and --seed need --shape' })
  const layers = v.layers === undefined ? undefined : intOption('serve', 'layers', v.layers as string, 0, 1)
  const seed = intOption('serve', 'seed', v.seed as string | undefined, 1234)
  const name = (v.name as string | undefined) ?? (shape ?? basename(resolve(mo.dir)))
  let tok: Tokenizer, model: Model
  if (shape !== undefined) {
    tok = loadTokenizer(DEFAULT_MODEL) // the real GPT-2 tokenizer (the default model's), for the shapes' 50257 ids
    model = await withLoadProgress(shape, (p) => loadRandomModel(shape, { device: mo.device, threads: mo.threads, dtype: mo.dtype, maxContext: mo.maxContext, maxMemory: mo.maxMemory, ortStatic: mo.ortStatic, sequences: parallel, seed, layers, ...p }))
  } else {
    folderKind(mo.dir, { followSymlinks: mo.followSymlinks }) // a folder that is not a model: its error before loading
    tok = requireTokenizer(mo.dir, 'serve', mo)
    model = await load('serve', v, { sequences: parallel })
  }
  let srv
  try {
    srv = createServe({ model, tokenizer: tok, modelId: name, parallel, maxQueue, apiKey, timeoutMs: timeout * 1000, log: (s) => process.stderr.write(s + '\n') })
  } catch (e) {
    await model.dispose()
    throw e instanceof Error && e.name === 'HttpError' ? new UsageError({ where: 'refgpt serve', what: asHttpError(e).message }) : e
  }
  let addr
  try {
    addr = await srv.listen(port, host)
  } catch (e) {
    await model.dispose()
    const code = (e as NodeJS.ErrnoException).code
    throw new UsageError({
      where: 'refgpt serve',
      what: code === 'EADDRINUSE' ? `port ${port} on ${host} is in use` : `cannot listen on ${host}:${port} (${code ?? (e as Error).message})`,
      hint: code === 'EADDRINUSE' ? 'pick another --port (0: any free one)' : code === 'EACCES' ? 'ports below 1024 need privileges; use a higher --port' : undefined,
    })
  }
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  process.stdout.write(`refgpt serve: ${name} on http://${shown}:${addr.port} (parallel ${parallel}, queue ${maxQueue}, context ${model.info.maxContext}${apiKey ? ', API key required' : ''})\n`)
  await new Promise<void>((resolveDone) => {
    let stopping = false
    const stop = (sig: string) => {
      if (stopping) return
      stopping = true
      process.stderr.write(`refgpt serve: ${sig}: finishing the requests in flight (at most ${grace} s)\n`)
      srv.shutdown(grace * 1000).then(resolveDone, resolveDone)
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  await model.dispose()
  process.stderr.write('refgpt serve: stopped\n')
}
