// The ONNX protobuf encoder, kept behind one function (encodeModelProto) so that it can be replaced.
//
// The messages are the subset of onnx/onnx.proto (ONNX IR, proto2) that a decoder graph needs, with the
// field numbers of the ONNX specification; protobufjs (npm `protobufjs`, the reference protobuf library
// for JavaScript) does the wire encoding from this schema. Nothing here knows about models.

import protobuf from 'protobufjs'

/** TensorProto.DataType values used by the exporter. */
export const DataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10 } as const

/** AttributeProto.AttributeType values used by the exporter. */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const

export interface StringStringEntryProto {
  key: string
  value: string
}

export interface TensorProto {
  name: string
  dims: number[]
  dataType: number
  /** Little-endian element bytes (data stored inside the model file). */
  rawData?: Uint8Array
  /** Data in a file beside the model (dataLocation 1): location, offset, length. */
  externalData?: StringStringEntryProto[]
  dataLocation?: number
}

export interface AttributeProto {
  name: string
  type: number
  f?: number
  i?: number
  s?: Uint8Array
  t?: TensorProto
  floats?: number[]
  ints?: number[]
}

export interface NodeProto {
  input: string[]
  output: string[]
  name?: string
  opType: string
  domain?: string
  attribute?: AttributeProto[]
}

export interface TensorShapeDimension {
  dimValue?: number
  dimParam?: string
}

export interface ValueInfoProto {
  name: string
  type: { tensorType: { elemType: number; shape: { dim: TensorShapeDimension[] } } }
  docString?: string
}

export interface GraphProto {
  name: string
  node: NodeProto[]
  initializer: TensorProto[]
  input: ValueInfoProto[]
  output: ValueInfoProto[]
  docString?: string
}

export interface ModelProto {
  irVersion: number
  opsetImport: { domain: string; version: number }[]
  producerName: string
  producerVersion: string
  docString?: string
  graph: GraphProto
  metadataProps?: StringStringEntryProto[]
}

/** onnx.proto, the messages and fields refgpt writes (numbers as in the ONNX specification). */
const SCHEMA = `
syntax = "proto2";
package onnx;

message AttributeProto {
  optional string name = 1;
  optional int32 type = 20;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  repeated float floats = 7;
  repeated int64 ints = 8;
}

message ValueInfoProto {
  optional string name = 1;
  optional TypeProto type = 2;
  optional string doc_string = 3;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  optional string domain = 7;
  repeated AttributeProto attribute = 5;
  optional string doc_string = 6;
}

message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string domain = 4;
  optional int64 model_version = 5;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}

message StringStringEntryProto {
  optional string key = 1;
  optional string value = 2;
}

message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  optional string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}

message TensorProto {
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  optional string name = 8;
  optional string doc_string = 12;
  optional bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  optional int32 data_location = 14;
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    optional string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    optional int32 elem_type = 1;
    optional TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  optional string denotation = 6;
}

message OperatorSetIdProto {
  optional string domain = 1;
  optional int64 version = 2;
}
`

let modelType: protobuf.Type | undefined

function types(): protobuf.Type {
  modelType ??= protobuf.parse(SCHEMA, { keepCase: false }).root.lookupType('onnx.ModelProto')
  return modelType
}

/** The protobuf bytes of an ONNX ModelProto (under 2 GiB: larger tensors belong in external data). */
export function encodeModelProto(model: ModelProto): Uint8Array {
  const t = types()
  return t.encode(t.fromObject(model)).finish()
}

/** Decodes ONNX ModelProto bytes into plain objects (for tests and `refgpt inspect`-style checks). */
export function decodeModelProto(bytes: Uint8Array): ModelProto {
  const t = types()
  return t.toObject(t.decode(bytes), { longs: Number, bytes: Uint8Array as unknown as typeof String, defaults: false, arrays: true }) as unknown as ModelProto
}
