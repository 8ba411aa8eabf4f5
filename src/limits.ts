/**
 * The most that one request may make the driver or a worker do or keep. Each refusal names the
 * limit and what to do instead; a refused request changes nothing.
 */
export const LIMITS = Object.freeze({
  /** Inputs named in one submit. */
  inputs: 10_000,
  /** Input files of one job, once its directories are expanded; also the entries read of one directory. */
  inputFiles: 10_000,
  /** Map tasks (splits) of one job: a bigger --split-size makes fewer. */
  maps: 20_000,
  /** Reduce tasks of one job. */
  reducers: 10_000,
  /** Bytes of one path; Linux's PATH_MAX. */
  pathBytes: 4096,
  /** Bytes of one component of a path; Linux's NAME_MAX. */
  nameBytes: 255,
  /** Bytes of every input path of one job together. */
  inputPathBytes: 1 << 20,
  /** Params of one job. */
  params: 64,
  /** Bytes of one param's name. */
  paramNameBytes: 128,
  /** Bytes of a job's params together, names and values. */
  paramBytes: 64 << 10,
  /** Tasks one worker may run at once (its --slots). */
  slotsPerWorker: 1024,
  /** Apps one worker may offer. */
  appsPerWorker: 256,
  /** Distinct counters an app may count in one attempt (ctx.count). */
  userCounters: 100,
  /** Bytes of a counter's name. */
  counterNameBytes: 128,
  /** Bytes of an attempt's error kept; a longer one is cut. */
  errorBytes: 8 << 10,
  /** Bytes of any request the driver receives; a submit near the limits above fits. */
  driverMessageBytes: 4 << 20,
  /** Bytes of a request a worker's shuffle service receives. */
  shuffleMessageBytes: 256 << 10,
  /** FetchPartition streams a worker serves at once; each holds at most a chunk and a file. */
  shuffleStreams: 64,
  /** Bytes of one reply of ListJobs; a longer page ends early, with a token for the rest. */
  listReplyBytes: 1 << 20,
  /** WatchJob streams open at once from one client host, and in all. */
  watchesPerClient: 64,
  watches: 1024,
});

/** The highest priority a job may have; 0 is the default and the lowest (see queuePriority). */
export const MAX_JOB_PRIORITY = 10;

/** A name of an app: a letter, then letters, digits, `_` or `-`, as a module file is named. */
export const APP_NAME = /^[A-Za-z][\w-]{0,63}$/;
