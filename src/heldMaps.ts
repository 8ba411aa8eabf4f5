/**
 * Which map outputs a reduce attempt holds, as AwaitMapOutputs carries them and
 * `attempts.held_maps` stores them: bit m of byte m / 8 is set when it holds map m's output.
 */

/** Whether the bitmap holds map `mapIndex`; null holds none. */
export function holds(held: Uint8Array | null, mapIndex: number): boolean {
  return held !== null && ((held[mapIndex >> 3] ?? 0) & (1 << (mapIndex & 7))) !== 0;
}

/** The bitmap of `total` maps that holds `mapIndexes`. */
export function heldBitmap(total: number, mapIndexes: Iterable<number>): Buffer {
  const held = Buffer.alloc(Math.ceil(total / 8));
  for (const m of mapIndexes) held[m >> 3]! |= 1 << (m & 7);
  return held;
}

/** The first of `total` maps whose output `held` lacks; `total` when it holds them all. */
export function firstNotHeld(held: Uint8Array, total: number): number {
  let byte = 0;
  while (byte < held.length && held[byte] === 0xff) byte++;
  let mapIndex = byte * 8;
  while (mapIndex < total && holds(held, mapIndex)) mapIndex++;
  return Math.min(mapIndex, total);
}
