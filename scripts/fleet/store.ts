// Fleet operations on the KV layout of src/fleet/records.ts: `fleet:backends` holds the whole fleet
// as one FleetRecord, `fleet:health` the cron probe's last HealthSnapshot (read here, never
// written). Every change reads the record, changes it and writes it whole, with a new `updated`:
// KV has no transactions, so two operators changing the fleet at the same moment can lose one of
// the two changes (docs/fleet.md).
import {
  FLEET_KEY,
  HEALTH_KEY,
  fleetRecordSchema,
  normalizeBackendUrl,
  type BackendHealth,
  type BackendRecord,
  type BackendState,
  type FleetRecord,
  type HealthSnapshot,
} from '../../src/fleet/records.ts'
import type { Kv } from '../keys/kv.ts'

export interface Fleet {
  /** null: no record, and the Worker uses BACKEND_URLS. */
  record: FleetRecord | null
  /** null: the probe has not written one yet, or it is not a snapshot. */
  health: HealthSnapshot | null
}

export async function readFleet(kv: Kv): Promise<Fleet> {
  const values = await kv.getMany([FLEET_KEY, HEALTH_KEY])
  return { record: parseRecord(values.get(FLEET_KEY) ?? null), health: parseHealth(values.get(HEALTH_KEY) ?? null) }
}

async function readRecord(kv: Kv): Promise<FleetRecord | null> {
  return parseRecord((await kv.getMany([FLEET_KEY])).get(FLEET_KEY) ?? null)
}

/** Checks the whole record again before it replaces the stored one. */
async function writeRecord(kv: Kv, record: FleetRecord): Promise<void> {
  const checked = fleetRecordSchema.safeParse(record)
  if (!checked.success)
    throw new Error(`Refusing to write an invalid fleet record: ${checked.error.issues.map((issue) => issue.message).join('; ')}`)
  await kv.putMany([{ key: FLEET_KEY, value: JSON.stringify(checked.data) }])
}

export type AddOutcome =
  /** previous: the record before, null when there was none. */
  | { added: BackendRecord; record: FleetRecord; previous: FleetRecord | null }
  /** Nothing written: a backend has this id, or this URL. */
  | { duplicate: 'id' | 'url'; existing: BackendRecord }

/** Appends the backend; makes the record when there is none. */
export async function addBackend(kv: Kv, backend: BackendRecord, now: number): Promise<AddOutcome> {
  const current = await readRecord(kv)
  const backends = current?.backends ?? []
  const url = normalizeBackendUrl(backend.url)
  const sameId = backends.find((other) => other.id === backend.id)
  if (sameId) return { duplicate: 'id', existing: sameId }
  const sameUrl = backends.find((other) => normalizeBackendUrl(other.url) === url)
  if (sameUrl) return { duplicate: 'url', existing: sameUrl }
  const added = { ...backend, url }
  const record: FleetRecord = { version: 1, updated: now, backends: [...backends, added] }
  await writeRecord(kv, record)
  return { added, record, previous: current }
}

/** Nothing written: no fleet record exists, or no backend in it has this id. */
export interface Unknown {
  unknown: 'record' | 'id'
}

export async function removeBackend(kv: Kv, id: string, now: number): Promise<{ removed: BackendRecord; record: FleetRecord } | Unknown> {
  const current = await readRecord(kv)
  const removed = current?.backends.find((backend) => backend.id === id)
  if (!current || !removed) return { unknown: current ? 'id' : 'record' }
  const record: FleetRecord = { ...current, updated: now, backends: current.backends.filter((backend) => backend !== removed) }
  await writeRecord(kv, record)
  return { removed, record }
}

/** Sets a backend's state; as revokeKey does for keys, nothing is written when it already has it. */
export async function setBackendState(
  kv: Kv,
  id: string,
  state: BackendState,
  now: number,
): Promise<{ backend: BackendRecord; changed: boolean } | Unknown> {
  const current = await readRecord(kv)
  const backend = current?.backends.find((candidate) => candidate.id === id)
  if (!current || !backend) return { unknown: current ? 'id' : 'record' }
  if (backend.state === state) return { backend, changed: false }
  const changed = { ...backend, state }
  const backends = current.backends.map((candidate) => (candidate === backend ? changed : candidate))
  await writeRecord(kv, { ...current, updated: now, backends })
  return { backend: changed, changed: true }
}

/** A damaged record fails loudly: list would print nonsense and a change would overwrite it. */
function parseRecord(json: string | null): FleetRecord | null {
  if (json === null) return null
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    value = undefined
  }
  const result = fleetRecordSchema.safeParse(value)
  if (!result.success) {
    throw new Error(
      `The KV entry ${FLEET_KEY} is not a valid fleet record (src/fleet/records.ts); fix or delete it before using the fleet CLI.`,
    )
  }
  return result.data
}

/** The snapshot is only shown, so a damaged one is dropped rather than failing the command. */
function parseHealth(json: string | null): HealthSnapshot | null {
  if (json === null) return null
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const { at, backends } = value as Record<string, unknown>
  if (typeof at !== 'number' || typeof backends !== 'object' || backends === null) return null
  return { at, backends: backends as Record<string, BackendHealth> }
}

/** One backend's entry of the snapshot, when it has the fields list shows. */
export function healthOf(snapshot: HealthSnapshot | null, id: string): BackendHealth | null {
  if (!snapshot || !Object.hasOwn(snapshot.backends, id)) return null
  const entry: unknown = snapshot.backends[id]
  if (typeof entry !== 'object' || entry === null) return null
  const health = entry as Record<string, unknown>
  if (typeof health.healthy !== 'boolean' || typeof health.checkedAt !== 'number') return null
  const numberOrNull = (field: unknown) => (typeof field === 'number' ? field : null)
  return {
    healthy: health.healthy,
    checkedAt: health.checkedAt,
    running: numberOrNull(health.running),
    waiting: numberOrNull(health.waiting),
    kvCacheUsage: numberOrNull(health.kvCacheUsage),
    problem: typeof health.problem === 'string' ? health.problem : null,
  }
}
