// ecom storefront: lists the products of the backend and orders one of them.
// Plain JavaScript, no build step, no external URL: every request goes to
// this page's own origin ("api/..." relative to the page), where nginx
// proxies /api/ to the backend.
(function () {
  "use strict";

  var API = "api/";

  function $(id) {
    return document.getElementById(id);
  }

  function setMessage(el, text, kind) {
    el.textContent = text;
    el.className = kind || "";
  }

  // fetch + JSON, rejecting with a readable message on HTTP errors.
  function request(method, path, body) {
    var options = { method: method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(API + path, options).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        try {
          data = text ? JSON.parse(text) : null;
        } catch (e) {
          data = null;
        }
        if (!resp.ok) {
          var detail = data && data.detail;
          if (Array.isArray(detail)) {
            detail = detail.map(function (d) { return d.msg; }).join("; ");
          }
          var err = new Error(detail || ("HTTP " + resp.status));
          err.status = resp.status;
          throw err;
        }
        return data;
      });
    });
  }

  function formatPrice(value) {
    var n = Number(value);
    return isFinite(n) ? n.toFixed(2) : String(value);
  }

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    return td;
  }

  function renderProducts(products) {
    var table = $("products");
    var tbody = table.querySelector("tbody");
    while (tbody.firstChild) {
      tbody.removeChild(tbody.firstChild);
    }
    products.forEach(function (p) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-product-id", String(p.id));

      var name = cell(p.name);
      if (p.description) {
        var desc = document.createElement("span");
        desc.className = "description";
        desc.textContent = p.description;
        name.appendChild(desc);
      }
      tr.appendChild(name);
      tr.appendChild(cell(formatPrice(p.price), "num"));
      tr.appendChild(cell(String(p.stock), p.stock > 0 ? "num" : "num out-of-stock"));

      var action = document.createElement("td");
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = "Order 1";
      button.disabled = !(p.stock > 0);
      button.setAttribute("aria-label", "Order 1 " + p.name);
      button.addEventListener("click", function () {
        order(p, button);
      });
      action.appendChild(button);
      tr.appendChild(action);
      tbody.appendChild(tr);
    });
    table.hidden = products.length === 0;
    setMessage($("status"), products.length ? products.length + " products" : "No products.", "");
  }

  function loadProducts() {
    setMessage($("status"), "Loading products\u2026", "");
    return request("GET", "products")
      .then(renderProducts)
      .catch(function (err) {
        setMessage($("status"), "Could not load the products: " + err.message, "error");
      });
  }

  function order(product, button) {
    button.disabled = true;
    setMessage($("result"), "Ordering 1 " + product.name + "\u2026", "");
    request("POST", "orders", { product_id: product.id, quantity: 1 })
      .then(function (o) {
        setMessage(
          $("result"),
          "Order #" + o.id + ": " + o.quantity + " \u00d7 " + product.name +
            ", total " + formatPrice(o.total) + " (" + o.status + ")",
          "ok"
        );
      })
      .catch(function (err) {
        setMessage($("result"), "Order failed: " + err.message, "error");
      })
      .then(loadProducts);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("reload").addEventListener("click", loadProducts);
    loadProducts();
  });
})();
