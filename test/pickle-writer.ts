// A pickle writer for tests: the opcodes torch.save emits, plus whatever a test needs to break.

export class Pickle {
  private parts: Buffer[] = []
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes))
    return this
  }
  proto(v: number): this { return this.op(0x80, v) }
  global(module: string, name: string): this {
    this.parts.push(Buffer.from(`c${module}\n${name}\n`))
    return this
  }
  str(s: string): this {
    const b = Buffer.from(s)
    const n = Buffer.alloc(4)
    n.writeUInt32LE(b.length)
    this.parts.push(Buffer.from('X'), n, b)
    return this
  }
  shortStr(s: string): this {
    const b = Buffer.from(s)
    return this.op(0x8c, b.length).raw(b)
  }
  int(v: number): this {
    const b = Buffer.alloc(5)
    b[0] = 0x4a
    b.writeInt32LE(v, 1)
    this.parts.push(b)
    return this
  }
  raw(b: Uint8Array): this {
    this.parts.push(Buffer.from(b))
    return this
  }
  mark(): this { return this.op(0x28) }
  tuple(): this { return this.op(0x74) }
  tupleOf(...items: number[]): this {
    this.mark()
    for (const x of items) this.int(x)
    return this.tuple()
  }
  emptyTuple(): this { return this.op(0x29) }
  reduce(): this { return this.op(0x52) }
  orderedDict(): this { return this.global('collections', 'OrderedDict').emptyTuple().reduce() }
  stop(): this { return this.op(0x2e) }
  bytes(): Buffer { return Buffer.concat(this.parts) }
}

export interface TensorSpec {
  name: string
  /** e.g. HalfStorage; default FloatStorage */
  storage?: string
  key: string
  numel: number
  offset: number
  shape: number[]
  stride: number[]
  parameter?: boolean
}

/** Pickles a state dict of tensors like torch.save does (optionally wrapped as {wrap: state_dict, epoch: 3}). */
export function statePickle(tensors: TensorSpec[], wrap?: string): Buffer {
  const p = new Pickle().proto(2)
  if (wrap) p.op(0x7d).str(wrap) // EMPTY_DICT, key
  p.orderedDict().mark()
  for (const t of tensors) {
    p.str(t.name)
    if (t.parameter) p.global('torch._utils', '_rebuild_parameter').mark()
    p.global('torch._utils', '_rebuild_tensor_v2').mark()
    p.mark().str('storage').global('torch', t.storage ?? 'FloatStorage').str(t.key).str('cpu').int(t.numel).tuple().op(0x51) // BINPERSID
    p.int(t.offset).tupleOf(...t.shape).tupleOf(...t.stride).op(0x89).orderedDict().tuple().reduce()
    if (t.parameter) p.op(0x88).orderedDict().tuple().reduce()
  }
  p.op(0x75) // SETITEMS
  if (wrap) p.op(0x73).str('epoch').int(3).op(0x73) // SETITEM, SETITEM
  return p.stop().bytes()
}
