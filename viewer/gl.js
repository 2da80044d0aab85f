// WebGL2 image renderer: one canvas, one image texture, the grayscale
// pipeline on the GPU so that window/level, invert and every transform change
// only uniforms (a redraw is one quad, whatever the image size).
//
// Pipeline per screen pixel (PS3.4 Annex N order): stored value (worker.js
// has masked the bits above Bits Stored) → Modality LUT as Rescale
// Slope/Intercept → VOI window (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT,
// SIGMOID) → MONOCHROME1 and user inversion → gray. Colour frames are shown as
// they are. Not here: Modality/VOI LUT sequences (the window stands in for
// them), palette colour, overlay planes.
//
// 16-bit data goes up as integer textures (R16UI / R16I): headless Chromium's
// SwiftShader has no EXT_texture_norm16, and integer textures keep every bit
// on any GPU. Integer textures cannot be filtered, so the shader filters
// itself: shown smaller than 1:1 it averages an n×n grid of texels under each
// screen pixel — the area average the server's own renderer uses — instead of
// dropping most of the pixels; magnified, it interpolates bilinearly between
// stored values, before the window. Mip levels averaged by the worker keep n
// at 2 for large images at any zoom: a software GPU (SwiftShader) pays per
// texel read.

const VERTEX = `#version 300 es
in vec2 a_unit;
uniform mat3 u_matrix;
out vec2 v_uv;
void main() {
  v_uv = a_unit;
  gl_Position = vec4((u_matrix * vec3(a_unit, 1.0)).xy, 0.0, 1.0);
}`;

// The VOI and output stage of the grayscale shaders.
const VOI = `
uniform float u_center;
uniform float u_width;
uniform int u_voi;       // 0 LINEAR, 1 LINEAR_EXACT, 2 SIGMOID
uniform bool u_invert;   // MONOCHROME1 xor the user's invert
out vec4 o_color;
float voi(float x) {
  if (u_voi == 2) return 1.0 / (1.0 + exp(-4.0 * (x - u_center) / max(u_width, 1e-6)));
  if (u_voi == 1) return clamp((x - u_center) / max(u_width, 1e-6) + 0.5, 0.0, 1.0);
  // PS3.3 C.11.2.1.2.1: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped.
  return clamp((x - (u_center - 0.5)) / max(u_width - 1.0, 1e-6) + 0.5, 0.0, 1.0);
}
void emit(float y) {
  y = u_invert ? 1.0 - y : y;
  o_color = vec4(y, y, y, 1.0);
}`;

// `sampler` is usampler2D or isampler2D.
const integerFragment = (sampler) => `#version 300 es
precision highp float;
precision highp int;
uniform highp ${sampler} u_tex;
uniform int u_lod;        // mip level read
uniform float u_slope;
uniform float u_intercept;
uniform int u_n;          // samples per axis under one screen pixel; 0: magnified
uniform vec2 u_step;      // texels between those samples
in vec2 v_uv;
${VOI}
float stored(ivec2 p) {
  return float(texelFetch(u_tex, p, u_lod).r);
}
void main() {
  ivec2 size = textureSize(u_tex, u_lod);
  if (u_n == 0) {
    // Magnified: bilinear between the four nearest stored values.
    vec2 p = v_uv * vec2(size) - 0.5;
    ivec2 i = ivec2(floor(p));
    vec2 f = fract(p);
    ivec2 hi = size - 1;
    float a = stored(clamp(i, ivec2(0), hi));
    float b = stored(clamp(i + ivec2(1, 0), ivec2(0), hi));
    float c = stored(clamp(i + ivec2(0, 1), ivec2(0), hi));
    float d = stored(clamp(i + ivec2(1, 1), ivec2(0), hi));
    emit(voi(mix(mix(a, b, f.x), mix(c, d, f.x), f.y) * u_slope + u_intercept));
    return;
  }
  vec2 base = v_uv * vec2(size) - 0.5 * u_step * float(u_n - 1);
  float sum = 0.0;
  for (int j = 0; j < 4; j++) {
    if (j >= u_n) break;
    for (int i = 0; i < 4; i++) {
      if (i >= u_n) break;
      ivec2 p = clamp(ivec2(base + vec2(i, j) * u_step), ivec2(0), size - 1);
      sum += stored(p);
    }
  }
  float x = sum / float(u_n * u_n) * u_slope + u_intercept;
  emit(voi(x));
}`;

// Colour (RGB) frames are shown as they are; only the user's invert applies.
const RGB_FRAGMENT = `#version 300 es
precision highp float;
uniform sampler2D u_rgb;
uniform bool u_invert;
in vec2 v_uv;
out vec4 o_color;
void main() {
  vec3 c = texture(u_rgb, v_uv).rgb;
  o_color = vec4(u_invert ? 1.0 - c : c, 1.0);
}`;

/**
 * Largest texture side asked of the GPU, even where it offers more (memory).
 * Desktop GPUs and SwiftShader all take it; frames are first fetched for it,
 * before any WebGL context exists (making one only to ask costs a software GPU
 * a few hundred milliseconds), and a smaller GPU gets them again downsampled.
 */
export const MAX_TEXTURE = 8192;

/**
 * Draws one image on one canvas. The owner passes plain data; nothing here
 * knows about DICOM JSON.
 */
export class Renderer {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{onLost?: () => void, onRestored?: () => void}} hooks
   */
  constructor(canvas, hooks = {}) {
    this.canvas = canvas;
    this.hooks = hooks;
    this.image = null;
    this.lost = false;
    // The context is lost when the GPU resets or the browser reclaims it
    // (too many contexts): keep the source data so the image can be put back.
    canvas.addEventListener('webglcontextlost', (e) => {
      e.preventDefault();
      this.lost = true;
      this.hooks.onLost?.();
    });
    canvas.addEventListener('webglcontextrestored', () => {
      this.lost = false;
      this.init();
      if (this.image) this.upload(this.image);
      this.hooks.onRestored?.();
    });
    this.init();
  }

  init() {
    // preserveDrawingBuffer: tests and screenshots read the pixels back after
    // the frame has been composited.
    const gl = this.canvas.getContext('webgl2', {
      preserveDrawingBuffer: true,
      antialias: false,
      premultipliedAlpha: false,
      alpha: false,
    });
    if (!gl) throw new Error('webgl2');
    this.gl = gl;
    this.maxTexture = Math.min(MAX_TEXTURE, gl.getParameter(gl.MAX_TEXTURE_SIZE));
    // Programs are compiled when first needed (or ahead of the frame, see
    // reading.js): a software GPU takes tens of milliseconds per shader, and
    // a viewport needs one of the three.
    this.programs = {};
    this.quad = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, this.quad);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([0, 0, 1, 0, 0, 1, 1, 1]), gl.STATIC_DRAW);
    this.texture = null;
  }

  /** The program for 'uint', 'int' or 'rgb' images, compiled on first use. */
  program(name) {
    if (this.programs[name]) return this.programs[name];
    const gl = this.gl;
    const fragment = { uint: () => integerFragment('usampler2D'), int: () => integerFragment('isampler2D'), rgb: () => RGB_FRAGMENT }[name]();
    const p = program(gl, VERTEX, fragment);
    p.vao = gl.createVertexArray();
    gl.bindVertexArray(p.vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.quad);
    const loc = gl.getAttribLocation(p.program, 'a_unit');
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    gl.bindVertexArray(null);
    this.programs[name] = p;
    return p;
  }

  /**
   * Replaces the image.
   * - `{kind: 'gray', levels, width, height, signed}`: mip levels, each a
   *   Uint16Array / Int16Array / Uint8Array / Int8Array of stored values,
   *   row-major, level k being level 0 averaged 2^k × 2^k (see worker.js).
   * - `{kind: 'rgb', pixels, width, height}`: interleaved 8-bit RGB, shown
   *   as is.
   */
  setImage(image) {
    this.image = image;
    if (!this.lost) this.upload(image);
  }

  /** Nothing to show (the next image is on its way). */
  clear() {
    this.image = null;
    if (this.texture && !this.lost) this.gl.deleteTexture(this.texture);
    this.texture = null;
  }

  upload(image) {
    const gl = this.gl;
    if (this.texture) gl.deleteTexture(this.texture);
    this.texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    // Rows of 16-bit data with an odd width are not 4-byte aligned.
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    const integer = image.kind === 'gray';
    const mipmapped = integer && image.levels.length > 1;
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, mipmapped ? gl.NEAREST_MIPMAP_NEAREST : integer ? gl.NEAREST : gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, integer ? gl.NEAREST : gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    if (integer) {
      const wide = image.levels[0].BYTES_PER_ELEMENT === 2;
      const [internal, format, type] = image.signed
        ? wide ? [gl.R16I, gl.RED_INTEGER, gl.SHORT] : [gl.R8I, gl.RED_INTEGER, gl.BYTE]
        : wide ? [gl.R16UI, gl.RED_INTEGER, gl.UNSIGNED_SHORT] : [gl.R8UI, gl.RED_INTEGER, gl.UNSIGNED_BYTE];
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAX_LEVEL, image.levels.length - 1);
      image.levels.forEach((pixels, k) => {
        const [w, h] = [Math.max(1, image.width >> k), Math.max(1, image.height >> k)];
        gl.texImage2D(gl.TEXTURE_2D, k, internal, w, h, 0, format, type, pixels);
      });
    } else {
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB8, image.width, image.height, 0, gl.RGB, gl.UNSIGNED_BYTE, image.pixels);
    }
  }

  /** Sizes the drawing buffer in device pixels (untouched if unchanged: resizing clears it). */
  resize(cssWidth, cssHeight, dpr) {
    const w = Math.max(1, Math.round(cssWidth * dpr));
    const h = Math.max(1, Math.round(cssHeight * dpr));
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== h) this.canvas.height = h;
  }

  /**
   * Draws the image.
   * @param {object} v
   * @param {number[]} v.matrix  3×3 column-major, unit image square → clip space
   * @param {number} v.texelsPerPixel  level-0 texels under one device pixel (> 1 when minified)
   * @param {{center:number,width:number,voi:number}} v.window  modality units
   * @param {boolean} v.invert  final inversion (MONOCHROME1 xor user)
   * @param {boolean} v.interactive  a drag is on: speed over filtering
   * @param {number} v.slope, v.intercept
   */
  draw(v) {
    const gl = this.gl;
    if (this.lost) return;
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    const image = this.image;
    if (!image || !this.texture) return;
    const name = image.kind === 'gray' ? (image.signed ? 'int' : 'uint') : 'rgb';
    const { program: prog, uniforms: u, vao } = this.program(name);
    gl.useProgram(prog);
    gl.bindVertexArray(vao);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.texture);
    gl.uniformMatrix3fv(u.u_matrix, false, v.matrix);
    gl.uniform1i(u.u_invert, v.invert ? 1 : 0);
    if (name === 'rgb') {
      gl.uniform1i(u.u_rgb, 0);
    } else {
      gl.uniform1i(u.u_tex, 0);
      gl.uniform1f(u.u_center, v.window.center);
      gl.uniform1f(u.u_width, v.window.width);
      gl.uniform1i(u.u_voi, v.window.voi);
      gl.uniform1f(u.u_slope, v.slope);
      gl.uniform1f(u.u_intercept, v.intercept);
      // The coarsest level still finer than the screen, then up to n×n of
      // its texels per screen pixel.
      const lod = Math.min(image.levels.length - 1, Math.max(0, Math.floor(Math.log2(v.texelsPerPixel))));
      const texels = v.texelsPerPixel / 2 ** lod;
      // While the user drags, one texel of the mip level per screen pixel:
      // a quarter of the reads, and the next frame comes sooner.
      const n = v.interactive ? 1 : texels < 1 ? 0 : Math.min(4, Math.ceil(texels - 1e-3));
      gl.uniform1i(u.u_lod, lod);
      gl.uniform1i(u.u_n, n);
      const step = texels / Math.max(1, n);
      gl.uniform2f(u.u_step, step, step);
    }
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    gl.bindVertexArray(null);
  }

  /** Frees the GPU memory now rather than when the page is collected. */
  dispose() {
    const gl = this.gl;
    if (this.texture) gl.deleteTexture(this.texture);
    this.texture = null;
    this.image = null;
    gl.getExtension('WEBGL_lose_context')?.loseContext();
  }
}

function program(gl, vs, fs) {
  const p = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS) && !gl.isContextLost()) {
      throw new Error(`shader: ${gl.getShaderInfoLog(s)}`);
    }
    gl.attachShader(p, s);
  }
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS) && !gl.isContextLost()) {
    throw new Error(`program: ${gl.getProgramInfoLog(p)}`);
  }
  const uniforms = {};
  const count = gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS) ?? 0;
  for (let i = 0; i < count; i++) {
    const { name } = gl.getActiveUniform(p, i);
    uniforms[name] = gl.getUniformLocation(p, name);
  }
  return { program: p, uniforms };
}
