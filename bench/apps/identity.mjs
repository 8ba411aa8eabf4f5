// For the memory benchmark: every line is a key, with no combiner, so the map side must sort
// and spill all of its input.
export function map({ line }, emit) {
  emit(line, "");
}

export function reduce(key, values, emit) {
  for (const value of values) emit(key, value);
}
