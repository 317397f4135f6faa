// cnnlab explore: the page's script. Plain JavaScript, no library: it draws what the Python server computes.
// Arrays arrive as {shape, lo, hi, data}: base64 uint8 levels, level 0 = lo and 255 = hi.
"use strict";
(function () {
  var info = null;
  // requested: changes of the input so far; done: the change the shown answers are for (tests wait on it).
  var state = { source: "canvas", upload: null, inflight: false, pending: false, timer: null, requested: 0, done: 0,
                selected: [], classChosen: [], lastInput: [], lastTop: [] };
  var canvas = document.getElementById("canvas");
  var ctx = canvas.getContext("2d");

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function pane(m) { return $('.model[data-model="' + m + '"]'); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function showMessage(text) {
    var box = $("#message");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function setState() {
    var busy = state.inflight || state.pending || state.timer !== null;
    document.body.dataset.state = busy ? "busy" : "idle";
    document.body.dataset.requested = String(state.requested);
    document.body.dataset.done = String(state.done);
  }

  function post(path, body) {
    return fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) {
        return r.json().catch(function () { return { error: "the server answered HTTP " + r.status }; })
          .then(function (d) {
            if (!r.ok) throw new Error(d.error || "the server answered HTTP " + r.status);
            return d;
          });
      });
  }

  // ---------------------------------------------------------------------------------------- pictures

  function levels(p) {
    var s = atob(p.data), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }

  // Positive values black -> red -> yellow -> white, negative ones black -> blue: zero is black.
  function colour(level, lo, hi, out, o) {
    var v = lo + (level / 255) * (hi - lo);
    if (v >= 0) {
      var t = hi > 0 ? Math.min(1, v / hi) : 0;
      out[o] = Math.round(255 * Math.min(1, 3 * t));
      out[o + 1] = Math.round(255 * Math.min(1, Math.max(0, 3 * t - 1)));
      out[o + 2] = Math.round(255 * Math.max(0, 3 * t - 2));
    } else {
      var u = lo < 0 ? Math.min(1, v / lo) : 0;
      out[o] = Math.round(60 * u); out[o + 1] = Math.round(140 * u); out[o + 2] = Math.round(255 * u);
    }
    out[o + 3] = 255;
  }

  // Draw plane(s) of `a` starting at `offset` into canvas `c` (h x w). mode: "map" (colours), "pixels"
  // (grey, or RGB when channels is 3: planar C x H x W levels).
  function draw(c, a, offset, h, w, p, mode, channels) {
    c.width = w; c.height = h;
    var g = c.getContext("2d"), img = g.createImageData(w, h), d = img.data, n = h * w;
    for (var i = 0; i < n; i++) {
      var o = 4 * i;
      if (mode === "map") { colour(a[offset + i], p.lo, p.hi, d, o); continue; }
      if (channels === 3) { d[o] = a[offset + i]; d[o + 1] = a[offset + n + i]; d[o + 2] = a[offset + 2 * n + i]; }
      else { d[o] = d[o + 1] = d[o + 2] = a[offset + i]; }
      d[o + 3] = 255;
    }
    g.putImageData(img, 0, 0);
  }

  // ---------------------------------------------------------------------------------------- the canvas

  function paper() {
    var c = info.models[0].canvas;
    ctx.fillStyle = c.paper;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  function point(ev) {
    var r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
  }

  function setupCanvas() {
    var last = null;
    canvas.addEventListener("pointerdown", function (ev) {
      ev.preventDefault();
      if (state.source === "upload") {  // drawing on an upload: the canvas is the input now
        state.source = "canvas";
        $("#input-note").textContent = "the canvas, drawn on the image";
      }
      canvas.setPointerCapture(ev.pointerId);
      last = point(ev);
      stroke(last, last);
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (last === null) return;
      var p = point(ev);
      stroke(last, p);
      last = p;
    });
    function end() { if (last !== null) { last = null; schedule(0); } }
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    $("#clear").addEventListener("click", function () {
      state.source = "canvas";
      paper();
      schedule(0);
    });
  }

  function stroke(a, b) {
    ctx.strokeStyle = info.models[0].canvas.ink;
    ctx.lineWidth = Number($("#pen").value);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0] + 0.01, b[1]);
    ctx.stroke();
    schedule(120);
  }

  function setupUpload() {
    $("#upload").addEventListener("change", function () {
      var f = this.files[0];
      this.value = "";
      if (!f) return;
      if (f.size > info.max_upload_bytes) {
        showMessage("upload: " + f.name + " is larger than " + Math.round(info.max_upload_bytes / 1048576) + " MiB");
        return;
      }
      var reader = new FileReader();
      reader.onload = function () { showInput(reader.result, f.name); };
      reader.readAsDataURL(f);
    });
  }

  // An image of the run's data (validation split) as the input: `index`, or a random one.
  function pick(index) {
    var count = info.models[0].patches.images;
    if (index === undefined) index = Math.floor(Math.random() * count);
    return post("/api/sample", { model: 0, index: index }).then(function (d) {
      showInput(d.image, "image #" + d.index + " of " + d.where + " (class " + d.label + ")");
    }, function (err) { showMessage(err.message); });
  }

  // An uploaded or picked image becomes the input; the canvas shows it, scaled to fit.
  function showInput(url, name) {
    state.source = "upload";
    state.upload = url;
    state.uploadName = name;
    $("#input-note").textContent = name;
    var img = new Image();
    img.onload = function () {
      paper();
      var s = Math.min(canvas.width / img.width, canvas.height / img.height);
      var w = img.width * s, h = img.height * s;
      ctx.imageSmoothingEnabled = img.width >= canvas.width / 2;  // small images (digits) stay sharp
      ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    };
    img.onerror = function () { paper(); };
    img.src = url;
    schedule(0);
  }

  function currentImage() { return state.source === "upload" ? state.upload : canvas.toDataURL("image/png"); }

  // ---------------------------------------------------------------------------------------- updating

  function schedule(delay) {
    state.requested += 1;
    if (state.timer !== null) { setState(); return; }
    state.timer = setTimeout(function () { state.timer = null; update(); }, delay);
    setState();
  }

  function update() {
    if (state.inflight) { state.pending = true; setState(); return; }
    state.inflight = true;
    setState();
    var image = currentImage(), source = state.source, generation = state.requested;
    var jobs = info.models.map(function (_, m) {
      return post("/api/predict", { image: image, model: m, top_k: 5 }).then(function (d) {
        renderPrediction(m, d);
        return Promise.all([state.selected[m] ? showUnit(m, image) : null,
                            $(".why-figure", pane(m)).hidden ? null : why(m, image)]);
      });
    });
    Promise.all(jobs).then(function () {
      showMessage("");
    }, function (err) {
      if (source === "upload") {
        showMessage((state.uploadName || "the image") + ": " + err.message);
        state.source = "canvas";
        paper();
      } else {
        showMessage(err.message);
      }
    }).then(function () {
      state.done = Math.max(state.done, generation);
      state.inflight = false;
      if (state.pending) { state.pending = false; update(); } else { setState(); }
    });
  }

  function renderPrediction(m, d) {
    var root = pane(m), list = $(".top", root);
    list.textContent = "";
    d.top.forEach(function (t, i) {
      var li = el("li", i === 0 ? "first" : "");
      li.dataset.class = t.class;
      li.dataset.index = String(t.index);
      var bar = el("span", "bar");
      bar.style.width = (100 * t.probability).toFixed(1) + "%";
      li.appendChild(el("span", "name", t.class));
      li.appendChild(el("span", "p", (100 * t.probability).toFixed(1) + "%"));
      li.appendChild(bar);
      list.appendChild(li);
    });
    state.lastTop[m] = d.top[0].index;
    var c = info.models[m].input_size;
    state.lastInput[m] = d.input;
    draw($(".seen", root), levels(d.input), 0, c[1], c[2], d.input, "pixels", c[0]);
    var notes = $(".notes", root);
    notes.textContent = "";
    d.notes.forEach(function (n) { notes.appendChild(el("li", "", n)); });
    renderStages(m, d.stages);
    var select = $(".why-class", root);
    if (!state.classChosen[m]) select.value = String(d.top[0].index);
  }

  function fieldText(f) {
    if (!f) return "no spatial receptive field";
    return "receptive field " + f.rf[0] + "\u00d7" + f.rf[1] + " px, units " + f.jump[0] + " px apart";
  }

  function renderStages(m, stages) {
    var root = $(".stages", pane(m));
    stages.forEach(function (s) {
      var stage = info.models[m].stages.filter(function (x) { return x.name === s.name; })[0];
      var box = $('.stage[data-layer="' + CSS.escape(s.name) + '"]', root);
      if (!box) {
        box = el("div", "stage");
        box.dataset.layer = s.name;
        var sh = stage.shape;
        var title = el("h4", "", s.name + " \u00b7 " + sh[0] + "\u00d7" + sh[1] + "\u00d7" + sh[2] + " \u00b7 " + fieldText(stage.field));
        box.appendChild(title);
        if (sh[0] > s.maps.shape[0]) {
          var more = el("p", "note", "the first " + s.maps.shape[0] + " of " + sh[0] + " maps; any unit: ");
          var input = el("input", "unit-pick");
          input.type = "number"; input.min = "0"; input.max = String(sh[0] - 1); input.placeholder = "0.." + (sh[0] - 1);
          input.setAttribute("aria-label", s.name + " unit number");
          input.addEventListener("change", function (name, field) {
            var u = Number(field.value);
            if (Number.isInteger(u) && u >= 0 && u < sh[0]) selectUnit(m, name, u);
          }.bind(null, s.name, input));
          more.appendChild(input);
          box.appendChild(more);
        }
        var grid = el("div", "grid");
        for (var u = 0; u < s.maps.shape[0]; u++) {
          var c = el("canvas", "fmap");
          c.dataset.layer = s.name;
          c.dataset.unit = String(u);
          c.title = s.name + " unit " + u;
          c.addEventListener("click", selectUnit.bind(null, m, s.name, u));
          grid.appendChild(c);
        }
        box.appendChild(grid);
        root.appendChild(box);
      }
      var a = levels(s.maps), h = s.maps.shape[1], w = s.maps.shape[2];
      $$("canvas.fmap", box).forEach(function (c, u) { draw(c, a, u * h * w, h, w, s.maps, "map"); });
    });
  }

  function selectUnit(m, layer, unit) {
    state.selected[m] = { layer: layer, unit: unit };
    $$(".fmap.selected", pane(m)).forEach(function (c) { c.classList.remove("selected"); });
    var c = $('.fmap[data-layer="' + CSS.escape(layer) + '"][data-unit="' + unit + '"]', pane(m));
    if (c) c.classList.add("selected");
    showUnit(m, currentImage()).then(function () { return showPatches(m); }).catch(function (err) { showMessage(err.message); });
  }

  function showUnit(m, image) {
    var sel = state.selected[m];
    return post("/api/unit", { image: image, model: m, layer: sel.layer, unit: sel.unit }).then(function (d) {
      var root = pane(m), panel = $(".unit", root);
      panel.hidden = false;
      $(".unit-title", root).textContent = d.layer + ", unit " + d.unit;
      var h = d.map.shape[0], w = d.map.shape[1];
      draw($(".unit-map", root), levels(d.map), 0, h, w, d.map, "map");
      $(".unit-caption", root).textContent = "its map (" + h + "\u00d7" + w + "); strongest " + d.max.value.toFixed(3) +
        " at row " + d.max.row + ", column " + d.max.col;
      drawBox(m, d.box);
      drawFilter(root, d.filter);
    });
  }

  function drawBox(m, box) {
    var overlay = $(".overlay", pane(m));
    overlay.textContent = "";
    if (!box) return;
    var size = info.models[m].input_size, H = size[1], W = size[2];
    var y0 = Math.max(0, box[0]), x0 = Math.max(0, box[1]), y1 = Math.min(H, box[2]), x1 = Math.min(W, box[3]);
    var div = el("div", "rf-box");
    div.style.left = (100 * x0 / W) + "%";
    div.style.top = (100 * y0 / H) + "%";
    div.style.width = (100 * (x1 - x0) / W) + "%";
    div.style.height = (100 * (y1 - y0) / H) + "%";
    div.title = "receptive field of the strongest position: rows " + box[0] + ".." + (box[2] - 1) + ", columns " +
      box[1] + ".." + (box[3] - 1) + " (clipped to the input)";
    overlay.appendChild(div);
  }

  function drawFilter(root, f) {
    var box = $(".filter", root), cap = $(".filter-caption", root);
    box.textContent = "";
    if (!f) { cap.textContent = "no convolution makes this stage's units"; return; }
    var a = levels(f.tiles), kh = f.shape[1], kw = f.shape[2];
    if (f.rgb) {
      var c = el("canvas", "tile rgb");
      draw(c, a, 0, kh, kw, f.tiles, "pixels", 3);
      box.appendChild(c);
      cap.textContent = "its filter in " + f.conv + " (" + kh + "\u00d7" + kw + ", RGB, grey = 0)";
      return;
    }
    f.channels.forEach(function (ch, i) {
      var t = el("canvas", "tile");
      t.title = "input channel " + ch;
      draw(t, a, i * kh * kw, kh, kw, f.tiles, "map");
      box.appendChild(t);
    });
    var parts = [];
    if (f.connected < f.shape[0]) parts.push("it reads " + f.connected + " of them");
    if (f.channels.length < f.connected) parts.push("the " + f.channels.length + " strongest shown");
    cap.textContent = "its filter in " + f.conv + ": " + f.shape[0] + " input channels of " + kh + "\u00d7" + kw +
      (parts.length ? " (" + parts.join("; ") + ")" : "") + "; red +, blue \u2212";
  }

  function showPatches(m) {
    var sel = state.selected[m], box = $(".patches", pane(m));
    if (!info.models[m].patches) {
      box.textContent = "none: without a run folder there are no images to search";
      return Promise.resolve();
    }
    box.textContent = "searching the data\u2026";
    return post("/api/patches", { model: m, layer: sel.layer, unit: sel.unit }).then(function (d) {
      box.textContent = "";
      var a = levels(d.crops), s = d.crops.shape, n = s[1] * s[2] * s[3];
      for (var j = 0; j < s[0]; j++) {
        var fig = el("figure", "patch"), c = el("canvas");
        fig.title = "use this image as the input";
        fig.addEventListener("click", pick.bind(null, d.index[j]));
        draw(c, a, j * n, s[2], s[3], d.crops, "pixels", s[1]);
        fig.appendChild(c);
        fig.appendChild(el("figcaption", "", "#" + d.index[j] + ": " + d.value[j].toFixed(2)));
        box.appendChild(fig);
      }
      box.appendChild(el("p", "note", "the " + s[0] + " images of " + d.where + " where this unit fires most, cut to its " +
        d.rf[0] + "\u00d7" + d.rf[1] + " px receptive field"));
    }, function (err) { box.textContent = err.message; });
  }

  // ---------------------------------------------------------------------------------------- why

  function setupWhy(m) {
    var root = pane(m), model = info.models[m];
    var cls = $(".why-class", root), method = $(".why-method", root);
    model.classes.forEach(function (name, i) {
      var o = el("option", "", name);
      o.value = String(i);
      cls.appendChild(o);
    });
    Object.keys(model.methods).forEach(function (name) {
      var o = el("option", "", name);
      o.value = name;
      if (model.methods[name]) { o.disabled = true; o.title = model.methods[name]; }
      method.appendChild(o);
    });
    var first = Object.keys(model.methods).filter(function (k) { return !model.methods[k]; })[0];
    if (first) method.value = first;
    cls.addEventListener("change", function () { state.classChosen[m] = true; });
    $(".why-go", root).addEventListener("click", function () { why(m, currentImage()); });
  }

  // The map of the chosen method and class over the input; once shown, it follows the input.
  function why(m, image) {
    var root = pane(m), target = Number($(".why-class", root).value), method = $(".why-method", root).value;
    var cap = $(".why-caption", root), fig = $(".why-figure", root);
    cap.textContent = "computing " + method + "\u2026";
    fig.hidden = false;
    return post("/api/attribute", { image: image, model: m, "class": target, method: method }).then(function (d) {
      var input = state.lastInput[m], size = info.models[m].input_size, h = size[1], w = size[2], n = h * w;
      var c = $(".why-map", root);
      c.width = w; c.height = h;
      var g = c.getContext("2d"), img = g.createImageData(w, h), px = levels(input), a = levels(d.map), rgb = [0, 0, 0, 0];
      for (var i = 0; i < n; i++) {
        colour(a[i], d.map.lo, d.map.hi, rgb, 0);
        for (var j = 0; j < 3; j++) {  // the map over the input, dimmed
          var v = px[(size[0] === 3 ? j * n : 0) + i];
          img.data[4 * i + j] = Math.round(0.45 * 0.6 * v + 0.55 * rgb[j]);
        }
        img.data[4 * i + 3] = 255;
      }
      g.putImageData(img, 0, 0);
      cap.textContent = method + " for class " + info.models[m].classes[target] + " (bright: more evidence)";
    }, function (err) { cap.textContent = err.message; });
  }

  // ---------------------------------------------------------------------------------------- start

  fetch("/api/info").then(function (r) { return r.json(); }).then(function (d) {
    info = d;
    paper();
    if (info.models[0].canvas.digit_box) $("#digit-box").hidden = false;
    setupCanvas();
    setupUpload();
    if (info.models[0].patches) {
      $("#sample").hidden = false;
      $("#sample").addEventListener("click", function () { pick(); });
    }
    info.models.forEach(function (_, m) { setupWhy(m); });
    window.explore = { info: info, state: state, update: update };
    schedule(0);
  }).catch(function (err) { showMessage("cannot reach the explorer's server: " + err.message); });
})();
