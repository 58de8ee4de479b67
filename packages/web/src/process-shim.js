// `process` for the few modules outside the loading path that read it (behind checks): no environment.
export const process = { env: {}, platform: 'browser', versions: {} }

// setImmediate (generateStream yields with it between steps): a MessageChannel task, not a clamped timer
const channel = new MessageChannel()
const queue = []
channel.port1.onmessage = () => queue.shift()?.()
export const setImmediate = (fn, ...args) => {
  queue.push(() => fn(...args))
  channel.port2.postMessage(0)
}
