import type { App } from "../app.js";
import { grep } from "./grep.js";
import { indexer } from "./indexer.js";
import { wordcount } from "./wordcount.js";

/** The apps every worker offers. */
export const BUILTIN_APPS: Readonly<Record<string, App>> = Object.freeze({ wordcount, indexer, grep });
