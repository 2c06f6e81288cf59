// A file import in pieces, so that a person sees real progress and one report for the whole file.
//
// A CSV file is cut into pieces of `rows` records (each piece starts with the header line), a JSON
// array into slices; each piece is one POST (the same route as a whole file). The answers
// ({accepted, updated, unchanged, rejected: [{line, reason}]}) are added up and every rejected
// line is given back its number in the whole file: a piece keeps the file's lines exactly (quoted
// line breaks and blank lines included), so a line of a piece is that line plus the piece's offset.

// The records of a CSV text, each with the line it starts on: [{text, line}] (a quoted field may
// hold line breaks, so a record may take several lines).
export function csvRecords(text) {
  const records = [];
  let start = 0, quoted = false, line = 1, startLine = 1;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '"') quoted = !quoted;
    else if (c === "\n") {
      line += 1;
      if (!quoted) { records.push({ text: text.slice(start, i).replace(/\r$/, ""), line: startLine }); start = i + 1; startLine = line; }
    }
  }
  if (start < text.length) records.push({ text: text.slice(start).replace(/\r$/, ""), line: startLine });
  return records;
}

// The pieces of a file: [{body, type, offset}] (offset: add it to a line the piece's answer names).
export function pieces(text, isJson, rows) {
  if (isJson) {
    let items;
    try { items = JSON.parse(text); } catch (ignored) { items = null; }
    if (!Array.isArray(items)) return [{ body: text, type: "application/json", offset: 0 }];  // the API says why
    const found = [];
    for (let at = 0; at < items.length; at += rows) {
      found.push({ body: JSON.stringify(items.slice(at, at + rows)), type: "application/json", offset: at });
    }
    return found.length ? found : [{ body: "[]", type: "application/json", offset: 0 }];
  }
  const [header, ...records] = csvRecords(text);
  const found = [];
  for (let at = 0; at < records.length; at += rows) {
    // the header is line 1 of every piece, its first record line 2: line n of a piece is line
    // n + (that record's line in the file - 2) of the file
    const slice = records.slice(at, at + rows);
    found.push({ body: [header.text, ...slice.map((r) => r.text)].join("\n") + "\n", type: "text/csv",
      offset: slice[0].line - 2 });
  }
  return found.length ? found : [{ body: (header ? header.text : "") + "\n", type: "text/csv", offset: 0 }];
}

// importFile(file, (body, type) => call(…), (done, total) => …) → the summed report
export async function importFile(file, send, progress, rows = 500) {
  const text = await file.text();
  const isJson = /\.json$/i.test(file.name) || file.type === "application/json";
  const parts = pieces(text, isJson, rows);
  const report = { accepted: 0, updated: 0, unchanged: 0, rejected: [] };
  progress(0, parts.length);
  for (const [index, part] of parts.entries()) {
    const answer = await send(part.body, part.type);
    for (const name of ["accepted", "updated", "unchanged"]) report[name] += answer[name] || 0;
    report.rejected.push(...(answer.rejected || []).map((r) => ({ ...r, line: r.line + part.offset })));
    progress(index + 1, parts.length);
  }
  return report;
}
