/* The replicate-home viewer's page script (served from the package; no inline script
 * runs: see the Content-Security-Policy). Every model output goes into the page with
 * textContent or as a media element's src: it is never parsed as markup. */
"use strict";

(function () {
  var body = document.body;
  var tokenMeta = document.querySelector('meta[name="viewer-token"]');

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function voterInput() { return document.getElementById("voter"); }
  function voter() {
    var input = voterInput();
    return input ? input.value.trim() : "";
  }

  function post(url, data) {
    var headers = {"content-type": "application/json"};
    headers[tokenMeta.dataset.header] = tokenMeta.content;
    return fetch(url, {method: "POST", headers: headers, body: JSON.stringify(data),
                       credentials: "same-origin"}).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) { throw new Error(text); });
      }
      return response.json();
    });
  }

  function runPath(run) { return encodeURIComponent(run).replace(/%2F/g, "/"); }

  /* -- the voter's name, kept by the browser ------------------------------------- */
  (function () {
    var input = voterInput();
    if (!input) { return; }
    try { input.value = window.localStorage.getItem("replicate-home-voter") || ""; } catch (e) {}
    input.addEventListener("change", function () {
      try { window.localStorage.setItem("replicate-home-voter", input.value.trim()); } catch (e) {}
    });
  })();

  /* -- full-size images ------------------------------------------------------------ */
  var lightbox = document.getElementById("lightbox");
  var lightboxImage = document.getElementById("lightbox-image");
  function showFull(src) {
    lightboxImage.src = src;
    lightbox.hidden = false;
  }
  function hideFull() {
    lightbox.hidden = true;
    lightboxImage.removeAttribute("src");
  }
  if (lightbox) {
    lightbox.addEventListener("click", hideFull);
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !lightbox.hidden) { hideFull(); }
    });
  }

  /* -- one output: text, images, audio, video, files -------------------------------- */
  function renderOutput(container, cell) {
    if (cell.text !== null && cell.text !== undefined && cell.text !== "") {
      container.appendChild(el("pre", "text", cell.text));
    }
    (cell.media || []).forEach(function (item, index) {
      var node;
      if (item.problem) {
        container.appendChild(el("div", "missing-file", "file " + (index + 1) + ": " + item.problem));
      }
      if (!item.url) { return; }
      if (item.kind === "image") {
        node = el("img", "thumb");
        node.alt = "output image " + (index + 1);
        node.loading = "lazy";
        node.src = item.url;
        node.addEventListener("click", function () { showFull(item.url); });
      } else if (item.kind === "audio" || item.kind === "video") {
        node = el(item.kind, item.kind);
        node.controls = true;
        node.preload = "metadata";
        node.src = item.url;
      } else {
        node = el("a", "file", "output file " + (index + 1));
        node.href = item.url;
        node.rel = "noopener noreferrer";
      }
      container.appendChild(node);
    });
  }

  /* -- the grid page ----------------------------------------------------------------- */
  function gridPage() {
    var run = body.dataset.run;
    var models = JSON.parse(body.dataset.models);
    var form = document.getElementById("filters");
    var table = document.getElementById("grid");
    var progressLine = document.getElementById("progress");
    var pageLabel = document.getElementById("page-label");
    var state = {offset: 0, limit: 25, matching: 0, shown: [], source: null};
    var cells = {};  // cell number -> its <td>

    function modelBoxes() { return form.querySelectorAll('input[name="model"]'); }

    function query() {
      var chosen = Array.prototype.filter.call(modelBoxes(), function (box) {
        return box.checked;
      }).map(function (box) { return box.value; });
      state.shown = chosen.map(Number);
      var params = new URLSearchParams();
      params.set("offset", String(state.offset));
      params.set("limit", String(state.limit));
      if (chosen.length !== models.length) { params.set("models", chosen.join(",")); }
      if (form.elements.status.value) { params.set("status", form.elements.status.value); }
      return params.toString();
    }

    function fillCell(td, cell) {
      td.textContent = "";
      var status = cell.status || cell.state;
      td.dataset.status = status;
      td.className = "cell status-" + status.replace(/ /g, "-");
      var head = el("div", "cell-head");
      head.appendChild(el("span", "status", status));
      if (cell.latency !== null && cell.latency !== undefined) {
        head.appendChild(el("span", "latency", cell.latency.toFixed(2) + " s"));
      }
      var up = el("button", "thumb-up", "\u25B2");
      up.type = "button"; up.title = "thumbs up";
      var down = el("button", "thumb-down", "\u25BC");
      down.type = "button"; down.title = "thumbs down";
      [[up, 1], [down, -1]].forEach(function (pair) {
        pair[0].addEventListener("click", function () {
          var name = voter();
          if (!name) { voterInput().focus(); return; }
          post("/api/runs/" + runPath(run) + "/thumbs",
               {cell: cell.cell, value: pair[1], voter: name}).then(function () {
            td.dataset.thumb = String(pair[1]);
          }).catch(function (error) { td.title = String(error); });
        });
      });
      if (cell.state === "done" && cell.status === "succeeded") {
        head.appendChild(up);
        head.appendChild(down);
      }
      td.appendChild(head);
      var output = el("div", "output");
      renderOutput(output, cell);
      td.appendChild(output);
      if (cell.error) { td.appendChild(el("pre", "error", cell.error)); }
    }

    function render(snapshot) {
      state.matching = snapshot.matching;
      var thead = table.tHead;
      var tbody = table.tBodies[0];
      thead.textContent = "";
      tbody.textContent = "";
      cells = {};
      var header = el("tr");
      header.appendChild(el("th", "prompt-head", "prompt"));
      state.shown.forEach(function (m) { header.appendChild(el("th", "model", models[m])); });
      thead.appendChild(header);
      var byRow = {};
      snapshot.cells.forEach(function (cell) {
        (byRow[cell.prompt_index] = byRow[cell.prompt_index] || {})[cell.model_index] = cell;
      });
      snapshot.rows.forEach(function (row) {
        var tr = el("tr");
        tr.dataset.prompt = String(row);
        var first = null;
        state.shown.forEach(function (m) {
          if (!first && byRow[row] && byRow[row][m]) { first = byRow[row][m]; }
        });
        var promptCell = el("th", "prompt");
        promptCell.appendChild(el("span", "row-number", "#" + (row + 1) + " "));
        promptCell.appendChild(document.createTextNode(first && first.prompt !== null ? first.prompt : ""));
        tr.appendChild(promptCell);
        state.shown.forEach(function (m) {
          var td = el("td", "cell");
          var cell = byRow[row] && byRow[row][m];
          if (cell) {
            td.dataset.cell = String(cell.cell);
            cells[cell.cell] = td;
            fillCell(td, cell);
          }
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
      var last = Math.min(state.offset + state.limit, state.matching);
      pageLabel.textContent = state.matching ?
        "prompts " + (state.offset + 1) + "\u2013" + last + " of " + state.matching : "no prompts match";
      document.getElementById("previous").disabled = state.offset === 0;
      document.getElementById("next").disabled = last >= state.matching;
    }

    function appendText(event) {
      var td = cells[event.cell];
      if (!td) { return; }
      var pre = td.querySelector("pre.text");
      if (!pre) {
        pre = el("pre", "text", "");
        td.querySelector(".output").appendChild(pre);
      }
      if (pre.textContent.length === event.at) {
        pre.textContent += event.text;
      }
      td.dataset.streamed = String(pre.textContent.length);
    }

    function showProgress(p) {
      progressLine.textContent = p.done + " / " + p.total + " cells done, " +
        p.failed + " failed" + (p.running ? ", " + p.running + " running" : "");
    }

    function connect() {
      if (state.source) { state.source.close(); }
      var source = new EventSource("/api/runs/" + runPath(run) + "/events?" + query());
      state.source = source;
      source.onmessage = function (message) {
        var event = JSON.parse(message.data);
        if (event.type === "snapshot") {
          render(event);
          showProgress(event.progress);
        } else if (event.type === "cells") {
          event.cells.forEach(function (cell) {
            if (cells[cell.cell]) { fillCell(cells[cell.cell], cell); }
          });
          showProgress(event.progress);
        } else if (event.type === "text") {
          appendText(event);
        }
      };
      body.dataset.live = "connecting";
      source.onopen = function () { body.dataset.live = "open"; };
    }

    form.addEventListener("change", function () { state.offset = 0; connect(); });
    document.getElementById("side-by-side").addEventListener("click", function () {
      var left = form.elements.left.value;
      var right = form.elements.right.value;
      Array.prototype.forEach.call(modelBoxes(), function (box) {
        box.checked = box.value === left || box.value === right;
      });
      state.offset = 0;
      connect();
    });
    document.getElementById("previous").addEventListener("click", function () {
      state.offset = Math.max(0, state.offset - state.limit);
      connect();
    });
    document.getElementById("next").addEventListener("click", function () {
      state.offset += state.limit;
      connect();
    });
    connect();
  }

  /* -- the vote page: keyboard first ---------------------------------------------- */
  function votePage() {
    var run = body.dataset.run;
    var problem = document.getElementById("vote-problem");
    var reveal = document.getElementById("reveal");
    var count = document.getElementById("vote-count");
    var current = null;
    var busy = false;
    var cast = 0;

    function say(text) {
      problem.textContent = text || "";
      problem.hidden = !text;
    }

    function show(side, output) {
      var container = document.querySelector("#side-" + side + " .output");
      container.textContent = "";
      renderOutput(container, output);
    }

    function next() {
      body.dataset.ready = "no";
      return fetch("/api/runs/" + runPath(run) + "/pair", {credentials: "same-origin"})
        .then(function (response) { return response.json(); })
        .then(function (data) {
          count.textContent = data.votes + " vote" + (data.votes === 1 ? "" : "s") + " so far.";
          if (!data.pair) {
            current = null;
            say("No prompt has outputs from two models yet.");
            return;
          }
          current = data.pair;
          document.getElementById("vote-prompt").textContent = data.prompt || "";
          show("a", data.a);
          show("b", data.b);
          body.dataset.ready = "yes";
        });
    }

    function choose(choice) {
      if (!current || busy) { return; }
      var name = voter();
      if (!name) {
        say("Give your name first (top right): votes are counted per voter.");
        voterInput().focus();
        return;
      }
      say("");
      busy = true;
      post("/api/runs/" + runPath(run) + "/votes", {pair: current, choice: choice, voter: name})
        .then(function (answer) {
          if (answer.recorded) {
            cast += 1;
            body.dataset.votes = String(cast);
            reveal.textContent = "You voted " + (choice === "tie" ? "a tie" : choice.toUpperCase()) +
              ": A was " + answer.a + ", B was " + answer.b + ".";
          } else {
            reveal.textContent = "Skipped.";
          }
          return next();
        })
        .catch(function (error) { say(String(error.message || error)); return next(); })
        .then(function () { busy = false; });
    }

    document.addEventListener("keydown", function (event) {
      var target = event.target;
      if (event.ctrlKey || event.metaKey || event.altKey) { return; }
      if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) { return; }
      var key = event.key.toLowerCase();
      var choice = {a: "a", b: "b", t: "tie", s: "skip"}[key];
      if (choice) {
        event.preventDefault();
        choose(choice);
      }
    });
    Array.prototype.forEach.call(document.querySelectorAll("button[data-choice]"), function (button) {
      button.addEventListener("click", function () { choose(button.dataset.choice); });
    });
    body.dataset.votes = "0";
    next();
  }

  var pages = {grid: gridPage, vote: votePage};
  window.replicateHomeViewer = {renderOutput: renderOutput, post: post, el: el,
                                runPath: runPath, voter: voter, voterInput: voterInput,
                                showFull: showFull};
  if (pages[body.dataset.page]) { pages[body.dataset.page](); }
})();
