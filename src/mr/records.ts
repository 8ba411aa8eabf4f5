import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { DEFAULT_TUNABLES } from "./tunables.js";

/**
 * The intermediate record format: `varint keyBytes, key, varint valueBytes, value`, UTF-8,
 * with no framing around it. Files in this format hold records sorted by key.
 */

/** A writer's buffer starts small and doubles up to this: most partitions of small maps are small. */
const WRITE_BUFFER_BYTES = 1 << 20;
const FIRST_WRITE_BUFFER_BYTES = 1 << 14;
/** What a reader reads at once, unless told less (a merge of many runs gives each a share). */
const READ_CHUNK_BYTES = DEFAULT_TUNABLES.readChunkBytes;

/**
 * Appends records to a file through a buffer of up to 1 MiB. The file is created at the first
 * flush; with `memoryBytes`, output that never outgrows it is kept in memory instead, and no file
 * is created at all (small map outputs, where creating a file costs more than the map).
 */
export class RecordWriter {
  private fd: number | undefined;
  private buf = Buffer.allocUnsafe(FIRST_WRITE_BUFFER_BYTES);
  private used = 0;
  /** Bytes written so far, buffered or not. */
  bytes = 0;
  records = 0;

  constructor(
    private readonly path: string,
    private readonly options: { memoryBytes?: number } = {},
  ) {}

  write(key: string, value: string): void {
    const need = 10 + Buffer.byteLength(key) + 10 + Buffer.byteLength(value);
    if (this.used + need > this.buf.length) {
      if (this.buf.length < WRITE_BUFFER_BYTES) {
        const grown = Buffer.allocUnsafe(Math.min(WRITE_BUFFER_BYTES, 2 * this.buf.length));
        this.buf.copy(grown, 0, 0, this.used);
        this.buf = grown;
      }
      if (this.used + need > this.buf.length) this.flush();
      if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need);
    }
    const start = this.used;
    this.used = writeString(this.buf, this.used, key);
    this.used = writeString(this.buf, this.used, value);
    this.bytes += this.used - start;
    this.records++;
  }

  /**
   * Finishes the output. Returns its bytes if they stayed in memory (never flushed, and no more
   * than `memoryBytes`); else they are in the file, and it returns undefined.
   */
  close(): Buffer | undefined {
    const memoryBytes = this.options.memoryBytes ?? 0;
    if (this.fd === undefined && memoryBytes > 0 && this.bytes <= memoryBytes) {
      return Buffer.from(this.buf.subarray(0, this.used)); // a copy of its size, not the buffer's
    }
    try {
      this.flush();
    } finally {
      this.discard();
    }
    return undefined;
  }

  /** Closes the file, if one was opened, without writing what is still buffered: for an output that failed. */
  discard(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.used = 0;
  }

  private flush(): void {
    this.fd ??= openSync(this.path, "w");
    let done = 0;
    while (done < this.used) done += writeSync(this.fd, this.buf, done, this.used - done);
    this.used = 0;
  }
}

function writeString(buf: Buffer, at: number, text: string): number {
  // Reserve one varint byte, write the text, then fix the length up if it needs more bytes.
  const textAt = at + 1;
  const length = buf.write(text, textAt, "utf8");
  if (length < 0x80) {
    buf[at] = length;
    return textAt + length;
  }
  const lengthBytes = varintSize(length);
  buf.copyWithin(at + lengthBytes, textAt, textAt + length);
  writeVarint(buf, at, length);
  return at + lengthBytes + length;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[at++] = n;
  return at;
}

/** Records in a byte range of a file: a whole file when start and end are left out. */
export interface FileRecords {
  path: string;
  start?: number;
  end?: number;
}

/** Records held in memory, as a reduce keeps the small map outputs it fetched. */
export interface MemoryRecords {
  data: Uint8Array;
}

export type RecordRange = FileRecords | MemoryRecords;

/** The bytes of a range; Infinity for a whole file, whose size is not known here. */
export function rangeBytes(range: RecordRange): number {
  if ("data" in range) return range.data.byteLength;
  return (range.end ?? Infinity) - (range.start ?? 0);
}

/**
 * Files opened once for the readers of many ranges in them: a reduce reads a thousand map
 * outputs out of a few fetched files, and must not hold a descriptor for each. Reads give their
 * position, so readers share a descriptor safely. The files must not change while open here.
 */
export class SharedFiles {
  private readonly open = new Map<string, { fd: number; users: number }>();

  acquire(path: string): number {
    let file = this.open.get(path);
    if (!file) this.open.set(path, (file = { fd: openSync(path, "r"), users: 0 }));
    file.users++;
    return file.fd;
  }

  release(path: string): void {
    const file = this.open.get(path)!;
    if (--file.users > 0) return;
    this.open.delete(path);
    closeSync(file.fd);
  }
}

/**
 * Buffer's own UTF-8 decoder, as `toString("utf8", start, end)` calls it past its checks of the
 * encoding and the bounds: half the cost of decoding a short key, and a reduce decodes every one.
 * Not in Node's documentation, so `toString` stands in wherever it is missing.
 */
const utf8Slice: (this: Buffer, start: number, end: number) => string =
  (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string })
    .utf8Slice ??
  function (this: Buffer, start: number, end: number): string {
    return this.toString("utf8", start, end);
  };

/**
 * Reads records from a byte range of a file, a chunk at a time, or from memory, synchronously:
 * the reduce side hands `values` to user code as a plain iterator, so the reads under it cannot
 * be async. Usage: `while (reader.next()) use(reader.key, reader.value)`.
 */
export class RecordReader {
  key = "";
  value = "";
  /** Undefined once the range is read whole into memory, or the reader is closed. */
  private fd: number | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private filePos: number;
  private closed = false;
  /** The bytes of the range; Infinity for a whole file. */
  readonly bytesTotal: number;

  /**
   * With `files`, the file's descriptor is shared with other readers of the same file.
   * `chunkBytes` is what one read asks for; the reader holds about that much. A range no
   * bigger is read whole at once, and its descriptor let go: a merge of a thousand small runs
   * holds their bytes, not a thousand descriptors.
   */
  constructor(
    private readonly path: string,
    start = 0,
    private readonly end = Infinity,
    private readonly files?: SharedFiles,
    private readonly chunkBytes = READ_CHUNK_BYTES,
  ) {
    this.filePos = start;
    this.bytesTotal = end - start;
    if (path === "") return; // records in memory (see `of`): buf holds them, and there is no file
    this.fd = files ? files.acquire(path) : openSync(path, "r");
    if (this.bytesTotal <= chunkBytes) {
      try {
        this.fill(0);
      } finally {
        this.release();
      }
    }
  }

  /** A reader of `range`, from its file or from memory. */
  static of(range: RecordRange, files?: SharedFiles, chunkBytes?: number): RecordReader {
    if (!("data" in range)) return new RecordReader(range.path, range.start, range.end, files, chunkBytes);
    const { data } = range;
    const reader = new RecordReader("", 0, data.byteLength);
    reader.buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    reader.filePos = data.byteLength;
    return reader;
  }

  /** The bytes of the range handed out as records so far. */
  get bytesRead(): number {
    return this.closed
      ? this.bytesTotal
      : this.bytesTotal - (this.end - this.filePos) - (this.buf.length - this.pos);
  }

  next(): boolean {
    if (this.closed) return false;
    const key = this.readString();
    if (key === null) {
      this.close();
      return false;
    }
    const value = this.readString();
    if (value === null) throw new Error("truncated record file: a key without its value");
    this.key = key;
    this.value = value;
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
  }

  private release(): void {
    if (this.fd === undefined) return;
    if (this.files) this.files.release(this.path);
    else closeSync(this.fd);
    this.fd = undefined;
  }

  private readString(): string | null {
    let length = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.buf.length && !this.fill(1)) {
        if (scale === 1) return null;
        throw new Error("truncated record file: a cut length");
      }
      const byte = this.buf[this.pos++]!;
      length += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
    }
    if (this.buf.length - this.pos < length && !this.fill(length)) {
      throw new Error("truncated record file: a cut string");
    }
    const text = utf8Slice.call(this.buf, this.pos, this.pos + length);
    this.pos += length;
    return text;
  }

  /** Makes at least `need` unread bytes available; false at the end of the range. */
  private fill(need: number): boolean {
    const rest = this.buf.subarray(this.pos);
    const size = Math.max(this.chunkBytes, need);
    const next = Buffer.allocUnsafe(Math.min(size, Math.max(0, this.end - this.filePos)) + rest.length);
    rest.copy(next, 0);
    let have = rest.length;
    while (have < next.length && this.fd !== undefined) {
      const n = readSync(this.fd, next, have, next.length - have, this.filePos);
      if (n === 0) break;
      have += n;
      this.filePos += n;
    }
    this.buf = next.subarray(0, have);
    this.pos = 0;
    return have >= need;
  }
}
