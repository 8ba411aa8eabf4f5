import Database from "better-sqlite3";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export type Db = Database.Database;

/** migrations/ at the package root, whether this file runs from src/ or dist/. */
export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "migrations");

/**
 * Opens (creating if needed) the driver's database: WAL, synchronous=FULL so a committed state
 * change survives power loss (GroupCommit waits for the disk its own way), foreign keys on, and
 * a busy timeout for readers such as tests. Savepoint journals stay in memory: each change runs
 * in a savepoint (see GroupCommit), and a journal in a temporary file cost each write's first
 * touch of a page a write to that file, half the time of a task's updates. Applies pending
 * migrations before returning.
 */
export function openDb(path: string, migrationsDir = MIGRATIONS_DIR): Db {
  const db = new Database(path);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    db.pragma("temp_store = MEMORY");
    migrate(db, migrationsDir);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** `NNNN_name.sql` files, in version order. */
export function readMigrations(dir: string): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d{4}_[\w-]+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ""),
      sql: readFileSync(join(dir, file), "utf8"),
    }));
}

/**
 * Applies each migration newer than the ledger, each in its own transaction with its ledger
 * row. Refuses a database that a newer mr has migrated, rather than guess at its schema.
 * Returns the versions applied; applying twice is a no-op.
 */
export function migrate(db: Db, dir: string): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const migrations = readMigrations(dir);
  const known = migrations.at(-1)?.version ?? 0;
  const current =
    (db.prepare("SELECT max(version) AS v FROM schema_migrations").get() as { v: number | null }).v ?? 0;
  if (current > known) {
    throw new Error(
      `database schema version ${current} is newer than this mr knows (${known}) (upgrade mr, or point --db at another file)`,
    );
  }
  const applied: number[] = [];
  const record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
  for (const migration of migrations) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      // The ledger row first: a second migrator racing on the same file fails on the key.
      record.run(migration.version, migration.name, Date.now());
      db.exec(migration.sql);
    }).immediate();
    applied.push(migration.version);
  }
  return applied;
}
