// Wharf console: small enhancements; every page works without this script.
(function () {
  "use strict";

  // Copy buttons: data-copy="<id of the input to copy>".
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy"));
      if (!input) return;
      var done = function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1500);
      };
      input.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () {
          document.execCommand("copy"); done();
        });
      } else {
        document.execCommand("copy"); done();
      }
    });
  });

  // Forms that change something irreversible ask first: data-confirm="question".
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  // A select that opens what it names.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Upload progress: the same multipart form, sent with XMLHttpRequest to show progress.
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    var bar = form.querySelector("progress");
    form.addEventListener("submit", function (event) {
      if (!window.XMLHttpRequest || !bar) return;
      event.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      bar.hidden = false;
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
      });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 400) {
          window.location.assign(xhr.responseURL || window.location.href);
        } else {
          document.open(); document.write(xhr.responseText); document.close();
        }
      });
      xhr.addEventListener("error", function () {
        bar.hidden = true;
        window.alert("The upload failed: the connection was lost.");
      });
      xhr.send(new FormData(form));
    });
  });

  // Live events: refresh the rows every 5 seconds while the box is checked.
  var live = document.getElementById("live");
  var rows = document.getElementById("event-rows");
  if (live && rows) {
    var url = live.getAttribute("data-live");
    var refresh = function () {
      if (!live.checked || document.hidden) return;
      fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + "rows=1", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { rows.innerHTML = html; })
        .catch(function () { /* keep the last rows */ });
    };
    setInterval(refresh, 5000);
  }
})();
