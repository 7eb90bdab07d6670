// The page's work: decode the photo, scale it to [-1, 1] as animegan2 does (x / 127.5 - 1),
// pad it to what the network needs, run model.onnx, crop, and turn it back into pixels with
// uint8(clip((y + 1) * 127.5)) -- the same steps as the Python package, so outputs match.
"use strict";
const META = JSON.parse(document.getElementById("metadata").textContent);
const MIN_SIDE = 8;
const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };
let session = null;
let outputName = "anime";

$("weights").textContent = META.weights;
$("upsample").textContent = META.upsample;
$("licence").textContent = "Licence note for these weights: " + META.license;

async function load() {
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;  // the vendored files, never a CDN
  const providers = navigator.gpu ? ["webgpu", "wasm"] : ["wasm"];
  session = await ort.InferenceSession.create("model.onnx", { executionProviders: providers });
  outputName = session.outputNames[0];
  status("Ready (" + (navigator.gpu ? "WebGPU" : "WebAssembly") + "). Drop a photo.");
  document.body.dataset.ready = "1";
}

// Mirror padding at the bottom and right, any amount: pad_reflect's repeated passes of at
// most n - 1 rows fold into this periodic index map (a 1-pixel side repeats).
function reflectIndex(i, n) {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  i %= period;
  return i < n ? i : period - i;
}

function paddedSize(h, w) {
  let ph = Math.max(h, MIN_SIDE), pw = Math.max(w, MIN_SIDE);
  if (META.upsample !== "align_corners") { ph = Math.ceil(ph / 4) * 4; pw = Math.ceil(pw / 4) * 4; }
  return [ph, pw];
}

function toTensor(rgba, h, w, ph, pw) {
  const data = new Float32Array(3 * ph * pw);
  const plane = ph * pw;
  for (let y = 0; y < ph; y++) {
    const sy = y < h ? y : reflectIndex(y, h);
    for (let x = 0; x < pw; x++) {
      const sx = x < w ? x : reflectIndex(x, w);
      const s = 4 * (sy * w + sx), d = y * pw + x;
      for (let k = 0; k < 3; k++) data[k * plane + d] = Math.fround(Math.fround(rgba[s + k] / 127.5) - 1);
    }
  }
  return new ort.Tensor("float32", data, [1, 3, ph, pw]);
}

function toPixels(tensor, h, w) {
  const [, , oh, ow] = tensor.dims;
  const out = new ImageData(w, h);
  const y = tensor.data, plane = oh * ow;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const s = r * ow + c, d = 4 * (r * w + c);
      for (let k = 0; k < 3; k++) {
        const v = Math.fround(Math.fround(y[k * plane + s] + 1) / 2) * 255;
        out.data[d + k] = Math.min(255, Math.max(0, Math.trunc(Math.fround(v))));
      }
      out.data[d + 3] = 255;
    }
  }
  return out;
}

async function stylize(file) {
  if (!session) return;
  $("download").disabled = true;
  delete document.body.dataset.done;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (err) {
    status(file.name + " is not an image this browser can decode.");
    return;
  }
  const w = bitmap.width, h = bitmap.height;
  const input = $("input");
  input.width = w; input.height = h;
  const ctx = input.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const [ph, pw] = paddedSize(h, w);
  status("Stylizing " + w + " x " + h + "...");
  const started = performance.now();
  const result = await session.run({ [session.inputNames[0]]: toTensor(rgba, h, w, ph, pw) });
  const pixels = toPixels(result[outputName], h, w);
  const output = $("output");
  output.width = w; output.height = h;
  output.getContext("2d").putImageData(pixels, 0, 0);
  status("Done in " + ((performance.now() - started) / 1000).toFixed(1) + " s.");
  $("download").disabled = false;
  $("download").dataset.name = file.name.replace(/\.[^.]*$/, "") + "_anime.png";
  document.body.dataset.done = "1";
}

$("file").addEventListener("change", (e) => { if (e.target.files[0]) stylize(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) stylize(e.dataTransfer.files[0]);
});
$("download").addEventListener("click", () => {
  $("output").toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = $("download").dataset.name || "anime.png";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
});
load().catch((err) => status("Could not load the model: " + err.message));
