// The official JavaScript client (`replicate` on npm), run unchanged against the
// emulator. tests/test_interop_js.py starts the emulator, runs this script with
// REPLICATE_API_TOKEN and REPLICATE_BASE_URL set, and checks what it prints: one JSON
// object whose keys name the checks below. Each check uses the client's public API only.
import { readFile } from "node:fs/promises";
import Replicate from "replicate";

const replicate = new Replicate({
  auth: process.env.REPLICATE_API_TOKEN,
  baseUrl: process.env.REPLICATE_BASE_URL,
});
const image = await readFile(process.env.INTEROP_IMAGE);
const report = {};

async function fileBytes(output) {
  // A FileOutput (a ReadableStream) for https: and data: outputs; its blob() reads it.
  const blob = await output.blob();
  return Buffer.from(await blob.arrayBuffer()).toString("base64");
}

// run() on an official model by name: the text arrives as a list of pieces.
report.text = (await replicate.run("meta/meta-llama-3-8b-instruct", {
  input: { prompt: "interop text" },
})).join("");

// stream(): the events of the stream origin, which needs no token.
let streamed = "";
for await (const event of replicate.stream("meta/meta-llama-3-8b-instruct", {
  input: { prompt: "interop stream" },
})) {
  if (event.event === "output") streamed += event.data;
}
report.stream = streamed;

// A file input, uploaded through the Files API (the client's default strategy), to a
// model with no prompt; the output is a FileOutput the client reads.
report.upload = await fileBytes(await replicate.run("replicate/upscaler", {
  input: { image, scale: 2 },
}));

// The same input sent inline as a data: URI. (Built here: the client's own
// fileEncodingStrategy "data-uri" passes its arguments in the wrong order in 1.4.0 and
// encodes the client object instead of the input.)
const dataUri = `data:image/png;base64,${image.toString("base64")}`;
report.data_uri = await fileBytes(await replicate.run("replicate/upscaler", {
  input: { image: dataUri, scale: 3 },
}));

// A community model: looked up, then run by version.
const model = await replicate.models.get("lucataco", "phi-3-mini-4k-instruct");
const version = model.latest_version.id;
report.community = (await replicate.run(`lucataco/phi-3-mini-4k-instruct:${version}`, {
  input: { prompt: "interop community" },
})).join("");

// Handles: create, wait, get, cancel, list (paginated).
const created = await replicate.predictions.create({
  model: "meta/meta-llama-3-8b-instruct",
  input: { prompt: "interop handle" },
});
const waited = await replicate.wait(created);
report.waited = { id: waited.id, status: waited.status };
const again = await replicate.predictions.get(created.id);
report.got = again.status;
const doomed = await replicate.predictions.create({
  model: "meta/meta-llama-3-8b-instruct",
  input: { prompt: "interop cancel" },
});
report.canceled = (await replicate.predictions.cancel(doomed.id)).status;
let listed = 0;
for await (const page of replicate.paginate(replicate.predictions.list)) {
  listed += page.length;
}
report.listed = listed;

// The Files API itself.
const file = await replicate.files.create(new Blob([image], { type: "image/png" }));
report.file = {
  same: (await replicate.files.get(file.id)).id === file.id,
  size: file.size,
};
await replicate.files.delete(file.id);

process.stdout.write(JSON.stringify(report));
