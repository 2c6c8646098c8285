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

// Hardware, collections and search (models.search sends QUERY /v1/models).
report.hardware = (await replicate.hardware.list()).map((item) => item.sku);
report.collections = (await replicate.collections.list()).results.map((c) => c.slug);
report.upscalers = (await replicate.collections.get("super-resolution")).models.map(
  (m) => `${m.owner}/${m.name}`,
);
report.search = (await replicate.models.search("whisper")).results.map(
  (m) => `${m.owner}/${m.name}`,
);

// A training into a new model of the account, waited for as a prediction (wait() polls
// GET /v1/predictions/{id}, which answers trainings too), then the new version runs.
await replicate.models.create("emulator", "interop-tuned", {
  visibility: "private",
  hardware: "cpu",
});
const base = await replicate.models.get("meta", "meta-llama-3-8b-instruct");
const training = await replicate.trainings.create(
  "meta",
  "meta-llama-3-8b-instruct",
  base.latest_version.id,
  { destination: "emulator/interop-tuned", input: { train_data: "interop" } },
);
const trained = await replicate.wait(training);
report.training = {
  status: (await replicate.trainings.get(training.id)).status,
  version: trained.output.version,
  listed: (await replicate.trainings.list()).results.map((t) => t.id).includes(training.id),
};
report.tuned = (await replicate.run(trained.output.version, {
  input: { prompt: "interop tuned" },
})).join("");
const doomedTraining = await replicate.trainings.create(
  "meta",
  "meta-llama-3-8b-instruct",
  base.latest_version.id,
  { destination: "emulator/interop-tuned", input: { train_data: "doomed" } },
);
report.training_canceled = (await replicate.trainings.cancel(doomedTraining.id)).status;

// Deployment management: create, update (a new release), delete.
const sdxl = await replicate.models.get("stability-ai", "sdxl");
const deployment = await replicate.deployments.create({
  name: "interop-app",
  model: "stability-ai/sdxl",
  version: sdxl.latest_version.id,
  hardware: "gpu-t4",
  min_instances: 0,
  max_instances: 2,
});
const updated = await replicate.deployments.update(deployment.owner, deployment.name, {
  max_instances: 4,
});
report.deployment = {
  release: updated.current_release.number,
  max: updated.current_release.configuration.max_instances,
  deleted: await replicate.deployments.delete(deployment.owner, deployment.name),
};

process.stdout.write(JSON.stringify(report));
