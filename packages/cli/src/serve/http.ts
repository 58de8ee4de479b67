// HTTP helpers for `refgpt serve` on node:http alone: errors in OpenAI's shape, a bounded JSON body reader,
// JSON responses and server-sent events (the framing OpenAI's streaming API uses: `data: <json>\n\n`, then
// `data: [DONE]\n\n`).

import type { IncomingMessage, ServerResponse } from 'node:http'
import { show } from '@refgpt/core'

/** An error the server answers with: an HTTP status and OpenAI's error object (message, type, param, code). */
export class HttpError extends Error {
  status: number
  /** OpenAI's error type: 'invalid_request_error' (4xx) or 'server_error' (5xx) unless given. */
  type: string
  /** The request field at fault ('temperature', 'messages[0].role'), or null. */
  param: string | null
  /** A machine-readable code ('request_too_large'), or null. */
  code: string | null
  constructor(status: number, message: string, opts: { type?: string; param?: string | null; code?: string | null } = {}) {
    super(message.replace(/\s*\n\s*/g, ' '))
    this.name = 'HttpError'
    this.status = status
    this.type = opts.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error')
    this.param = opts.param ?? null
    this.code = opts.code ?? null
  }
}

/** OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`. */
export function errorBody(e: HttpError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } }
}

/**
 * Reads a JSON object body of at most `maxBytes` bytes. A Content-Length over the limit is refused before any
 * of the body is read; without one (chunked) the reading stops at the first chunk that takes the total over
 * the limit (413, code 'request_too_large'). A Content-Type other than application/json is refused (415); none
 * at all is accepted. Every failure rejects with an HttpError (the client going away too: 400), never another
 * error. When a body is refused unread, `sendError` answers with `Connection: close` so that Node does not read
 * on through the rest of it.
 */
export function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  return new Promise<unknown>((resolve, reject) => {
    const ctype = req.headers['content-type']
    if (ctype !== undefined) {
      const media = ctype.split(';')[0].trim().toLowerCase()
      // application/json, or what `curl -d` sends by default (its body is still read as JSON); not multipart, XML ...
      if (media !== 'application/json' && media !== 'application/x-www-form-urlencoded') {
        reject(new HttpError(415, `unsupported Content-Type (expected application/json, found ${show(ctype)})`, { code: 'unsupported_media_type' }))
        return
      }
    }
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) > maxBytes) {
      reject(tooLarge(maxBytes, `Content-Length ${Number(declared)}`))
      return
    }
    const chunks: Buffer[] = []
    let total = 0
    let done = false
    const finish = (err: HttpError | null, value?: unknown) => {
      if (done) return
      done = true
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('aborted', onAborted)
      req.off('close', onClose)
      // 'error' stays handled: an error after we are done must not become an uncaught exception
      if (err) {
        req.pause()
        reject(err)
      } else resolve(value)
    }
    const onData = (chunk: Buffer) => {
      total += chunk.length
      if (total > maxBytes) {
        chunks.length = 0
        finish(tooLarge(maxBytes, `more than ${maxBytes} bytes`))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      try {
        finish(null, parseBody(Buffer.concat(chunks, total)))
      } catch (e) {
        finish(e instanceof HttpError ? e : new HttpError(400, `request body could not be read: ${String(e)}`))
      }
    }
    const onAborted = () => finish(new HttpError(400, 'request body incomplete: the client closed the connection', { code: 'request_aborted' }))
    const onError = (e: Error) => finish(new HttpError(400, `request body could not be read: ${show(e.message)}`, { code: 'request_aborted' }))
    const onClose = () => { if (!req.complete) onAborted() }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('aborted', onAborted)
    req.on('error', onError)
    req.on('close', onClose)
  })
}

function tooLarge(maxBytes: number, found: string): HttpError {
  return new HttpError(413, `request body too large (expected at most ${maxBytes} bytes, found ${found})`, { code: 'request_too_large' })
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function parseBody(bytes: Buffer): unknown {
  if (bytes.length === 0) throw new HttpError(400, 'empty request body (expected a JSON object)')
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    throw new HttpError(400, 'request body is not valid UTF-8 (expected a JSON object in UTF-8)')
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    // JSON.parse's own message says where ("... in JSON at position 12"); V8 may quote a bit of the input
    const msg = (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ')
    throw new HttpError(400, `request body is not valid JSON: ${msg.length > 200 ? msg.slice(0, 199) + '…' : msg}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new HttpError(400, `request body must be a JSON object (found ${show(value)})`)
  return value
}

/** Answers with `body` as JSON (Content-Type application/json; charset=utf-8 and a Content-Length). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) ?? 'null'
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
  })
  res.end(text)
}

/**
 * Answers with OpenAI's error body. When the request's body was left unread (refused by size or type), the
 * connection is closed after the answer. When the headers are already out (a stream under way), the status
 * can no longer be sent: the error goes out as one more event and the response ends.
 */
export function sendError(res: ServerResponse, e: HttpError, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end(`data: ${JSON.stringify(errorBody(e))}\n\n`)
    return
  }
  const req = (res as ServerResponse & { req?: IncomingMessage }).req
  const extra: Record<string, string> = req !== undefined && !req.complete ? { connection: 'close' } : {}
  sendJson(res, e.status, errorBody(e), { ...headers, ...extra })
}

/** Starts a server-sent event stream: 200, text/event-stream, no caching or proxy buffering; the headers go out now. */
export function sseStart(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  })
  res.flushHeaders()
}

/** Whether the response can still be written: not ended, and its socket still open. */
function writable(res: ServerResponse): boolean {
  return !res.writableEnded && !res.destroyed && !(res.socket?.destroyed ?? true)
}

/**
 * Sends one event, `data: <json>\n\n` (JSON.stringify never writes a raw newline, so one data line). Returns
 * false, writing nothing, when the client is gone (the caller then stops generating); it does not report
 * back-pressure.
 */
export function sseSend(res: ServerResponse, obj: unknown): boolean {
  if (!writable(res)) return false
  res.write(`data: ${JSON.stringify(obj) ?? 'null'}\n\n`)
  return true
}

/** Ends the stream with OpenAI's terminator, `data: [DONE]\n\n`. */
export function sseDone(res: ServerResponse): void {
  if (res.writableEnded) return
  if (writable(res)) res.end('data: [DONE]\n\n')
  else res.end()
}
