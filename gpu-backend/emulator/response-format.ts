// `response_format` as vLLM v0.11.0 types it (protocol.py): AnyResponseFormat =
// Union[ResponseFormat, StructuralTagResponseFormat], validated by pydantic's smart union (when
// both members fail, the errors of both are reported, each under its member's name), then mapped
// to structured-output params in ChatCompletionRequest.to_sampling_params. The emulator checks the
// shape and records the constraint; it does not constrain its generated text.

import { isDict, type Dict, type Loc, type PydanticError } from './pydantic.ts'

export type StructuredOutputs =
  | { kind: 'none' }
  | { kind: 'params'; params: Dict }
  /** type json_schema without json_schema: to_sampling_params asserts, which is a 500. */
  | { kind: 'missing_json_schema' }

const missing = (loc: Loc): PydanticError => ({ type: 'missing', loc, msg: 'Field required' })

function typedField(errors: PydanticError[], value: unknown, loc: Loc, kind: 'string' | 'dict' | 'bool' | 'list'): void {
  if (value === undefined || value === null) return
  if (kind === 'string' && typeof value !== 'string') errors.push({ type: 'string_type', loc, msg: 'Input should be a valid string' })
  if (kind === 'dict' && !isDict(value)) errors.push({ type: 'dict_type', loc, msg: 'Input should be a valid dictionary' })
  if (kind === 'bool' && typeof value !== 'boolean') errors.push({ type: 'bool_type', loc, msg: 'Input should be a valid boolean' })
  if (kind === 'list' && !Array.isArray(value)) errors.push({ type: 'list_type', loc, msg: 'Input should be a valid list' })
}

/** JsonSchemaResponseFormat: name (required), description, schema (alias of json_schema), strict. */
function jsonSchemaErrors(value: unknown, loc: Loc): PydanticError[] {
  if (value === undefined || value === null) return []
  if (!isDict(value))
    return [{ type: 'model_type', loc, msg: 'Input should be a valid dictionary or instance of JsonSchemaResponseFormat' }]
  const errors: PydanticError[] = []
  if (value.name === undefined) errors.push(missing([...loc, 'name']))
  else typedField(errors, value.name, [...loc, 'name'], 'string')
  if (value.name === null) errors.push({ type: 'string_type', loc: [...loc, 'name'], msg: 'Input should be a valid string' })
  typedField(errors, value.description, [...loc, 'description'], 'string')
  typedField(errors, value.schema, [...loc, 'schema'], 'dict')
  typedField(errors, value.strict, [...loc, 'strict'], 'bool')
  return errors
}

function responseFormatErrors(value: Dict, loc: Loc): PydanticError[] {
  const at = [...loc, 'ResponseFormat']
  const errors: PydanticError[] = []
  if (value.type === undefined) errors.push(missing([...at, 'type']))
  else if (value.type !== 'text' && value.type !== 'json_object' && value.type !== 'json_schema') {
    errors.push({ type: 'literal_error', loc: [...at, 'type'], msg: "Input should be 'text', 'json_object' or 'json_schema'" })
  }
  return [...errors, ...jsonSchemaErrors(value.json_schema, [...at, 'json_schema'])]
}

function structuralTagErrors(value: Dict, loc: Loc): PydanticError[] {
  const at = [...loc, 'StructuralTagResponseFormat']
  const errors: PydanticError[] = []
  if (value.type === undefined) errors.push(missing([...at, 'type']))
  else if (value.type !== 'structural_tag')
    errors.push({ type: 'literal_error', loc: [...at, 'type'], msg: "Input should be 'structural_tag'" })
  for (const field of ['structures', 'triggers']) {
    if (value[field] === undefined) errors.push(missing([...at, field]))
    else if (!Array.isArray(value[field])) errors.push({ type: 'list_type', loc: [...at, field], msg: 'Input should be a valid list' })
  }
  return errors
}

/** What a valid response_format asks of structured outputs. */
function constraintOf(format: Dict): StructuredOutputs {
  if (format.type === 'json_object') return { kind: 'params', params: { json_object: true } }
  if (format.type === 'json_schema') {
    const schema = format.json_schema
    if (!isDict(schema)) return { kind: 'missing_json_schema' }
    return { kind: 'params', params: { json: schema.schema ?? null } }
  }
  if (format.type === 'structural_tag') {
    return {
      kind: 'params',
      params: { structural_tag: JSON.stringify({ type: 'structural_tag', structures: format.structures, triggers: format.triggers }) },
    }
  }
  return { kind: 'params', params: {} } // "text": structured outputs on, with no constraint
}

/** Validates body.response_format (type errors go to `errors`) and returns its constraint. */
export function readResponseFormat(body: Dict, errors: PydanticError[]): StructuredOutputs {
  const value = body.response_format
  if (value === undefined || value === null) return { kind: 'none' }
  const loc = ['body', 'response_format']
  if (!isDict(value)) {
    errors.push(
      { type: 'model_type', loc: [...loc, 'ResponseFormat'], msg: 'Input should be a valid dictionary or instance of ResponseFormat' },
      {
        type: 'model_type',
        loc: [...loc, 'StructuralTagResponseFormat'],
        msg: 'Input should be a valid dictionary or instance of StructuralTagResponseFormat',
      },
    )
    return { kind: 'none' }
  }
  const plain = responseFormatErrors(value, loc)
  const tagged = structuralTagErrors(value, loc)
  if (plain.length > 0 && tagged.length > 0) {
    errors.push(...plain, ...tagged)
    return { kind: 'none' }
  }
  return constraintOf(value)
}
