/*
 * The segment builder: draws a segment definition (a JSON tree of all/any/none groups and
 * conditions, see docs/segments.md) as nested groups of inputs, keeps the hidden JSON field in step
 * with every click and keystroke, and asks the admin for a live size estimate and a preview of the
 * first matching people a moment after the last change.
 *
 * What it offers (condition types, operators by kind of value, attributes, choices) comes from the
 * catalog the server renders (segments/builder.py), so it can only build what the validator
 * accepts. Problems the server finds come back with the path of their node ("all[1].any[0]") and
 * are shown next to that node. Plain JavaScript, no dependencies.
 */
(function () {
  "use strict";

  var DAYS_OPS = ["more_than_days_ago", "less_than_days_ago", "within_next_days"];
  var LIST_OPS = ["one_of", "not_one_of", "includes", "not_includes"];
  var NO_VALUE_OPS = ["exists", "blank"];
  var ESTIMATE_DELAY_MS = 600;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === undefined || value === null || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function select(options, value, onchange, attrs) {
    var node = el("select", attrs || {});
    options.forEach(function (option) {
      if (option.group) {
        var group = el("optgroup", { label: option.group });
        option.options.forEach(function (inner) {
          group.appendChild(el("option", { value: inner.value, text: inner.label }));
        });
        node.appendChild(group);
      } else {
        node.appendChild(el("option", { value: option.value, text: option.label }));
      }
    });
    node.value = value === undefined || value === null ? "" : String(value);
    node.addEventListener("change", function () { onchange(node.value); });
    return node;
  }

  function isGroup(node) {
    if (!node || typeof node !== "object" || Array.isArray(node)) return false;
    var keys = Object.keys(node);
    return keys.length === 1 && ["all", "any", "none"].indexOf(keys[0]) >= 0;
  }

  function groupKind(node) { return Object.keys(node)[0]; }

  function childPath(parent, kind, index) {
    return (parent ? parent + "." : "") + kind + "[" + index + "]";
  }

  function valueShape(op) {
    if (!op || NO_VALUE_OPS.indexOf(op) >= 0) return "none";
    if (op === "between") return "pair";
    if (LIST_OPS.indexOf(op) >= 0) return "list";
    if (DAYS_OPS.indexOf(op) >= 0) return "days";
    return "single";
  }

  function Builder(root) {
    this.root = root;
    this.catalog = JSON.parse(document.getElementById(root.dataset.catalog).textContent);
    this.config = JSON.parse(document.getElementById(root.dataset.config).textContent);
    this.textarea = root.querySelector("textarea.sb-json");
    this.tree = root.querySelector(".sb-tree");
    this.types = {};
    this.attributes = {};
    this.suggestions = {};
    this.datalists = {};
    this.uid = Math.random().toString(36).slice(2, 8);
    var self = this;
    this.catalog.types.forEach(function (type) { self.types[type.type] = type; });
    this.catalog.attributes.forEach(function (attribute) { self.attributes[attribute.value] = attribute; });
  }

  Builder.prototype.start = function () {
    var self = this;
    var parsed = this.parse(this.textarea.value);
    this.definition = parsed.ok && isGroup(parsed.value) ? parsed.value : { all: [] };
    var empty = parsed.ok && parsed.value && typeof parsed.value === "object" && !Object.keys(parsed.value).length;
    if (parsed.ok && !isGroup(parsed.value) && !empty && this.textarea.value.trim()) {
      this.showJsonError("The stored definition is not a group; starting from an empty one.");
    }
    this.textarea.hidden = true;
    this.root.querySelector(".sb-tools").hidden = false;
    this.root.querySelector(".sb-live").hidden = false;
    this.root.querySelector(".sb-toggle-json").addEventListener("click", function () { self.toggleJson(); });
    this.textarea.addEventListener("change", function () { self.applyJson(); });
    var workspaceSelect = this.workspaceSelect();
    if (workspaceSelect) {
      workspaceSelect.addEventListener("change", function () {
        self.suggestions = {};
        self.render();
        self.changed();
      });
    }
    this.render();
    this.showProblems(this.config.problems || []);
    this.sync();
    this.estimateSoon(0);
    window.setInterval(function () { self.tickAge(); }, 1000);
  };

  Builder.prototype.parse = function (text) {
    if (!text || !text.trim()) return { ok: true, value: { all: [] } };
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (error) {
      return { ok: false, error: error.message };
    }
  };

  Builder.prototype.workspaceSelect = function () {
    return this.config.workspace ? null : document.getElementById("id_workspace");
  };

  Builder.prototype.workspace = function () {
    if (this.config.workspace) return String(this.config.workspace);
    var select = this.workspaceSelect();
    return select && select.value ? select.value : null;
  };

  // --- JSON view ---------------------------------------------------------------------------------

  Builder.prototype.toggleJson = function () {
    var showing = !this.textarea.hidden;
    if (showing) {
      if (!this.applyJson()) return;
      this.textarea.hidden = true;
      this.tree.hidden = false;
      this.root.querySelector(".sb-toggle-json").textContent = "Edit as JSON";
    } else {
      this.sync();
      this.textarea.hidden = false;
      this.tree.hidden = true;
      this.root.querySelector(".sb-toggle-json").textContent = "Back to the builder";
    }
  };

  Builder.prototype.applyJson = function () {
    var parsed = this.parse(this.textarea.value);
    if (!parsed.ok) {
      this.showJsonError("Not valid JSON: " + parsed.error);
      return false;
    }
    if (!isGroup(parsed.value)) {
      this.showJsonError('The definition must be a group: {"all": [...]}, {"any": [...]} or {"none": [...]}.');
      return false;
    }
    this.showJsonError("");
    this.definition = parsed.value;
    this.render();
    this.changed();
    return true;
  };

  Builder.prototype.showJsonError = function (message) {
    var box = this.root.querySelector(".sb-json-error");
    box.textContent = message;
    box.hidden = !message;
  };

  // --- state changes -----------------------------------------------------------------------------

  Builder.prototype.sync = function () {
    this.textarea.value = JSON.stringify(this.definition, null, 2);
  };

  /* A value changed: keep the field in step and estimate again shortly. */
  Builder.prototype.changed = function () {
    this.sync();
    this.estimateSoon(ESTIMATE_DELAY_MS);
  };

  /* The shape changed: draw the tree again, then as above. */
  Builder.prototype.restructured = function () {
    this.render();
    this.changed();
  };

  Builder.prototype.defaultCondition = function (typeName) {
    var type = this.types[typeName];
    var node = { type: typeName };
    var self = this;
    type.fields.forEach(function (field) {
      if (field.required === false) return;
      if (field.widget === "select") node[field.key] = field.options[0].value;
      else if (field.widget === "attribute") node[field.key] = self.catalog.attributes[0].value;
      else if (field.widget === "boolean") node[field.key] = true;
      else if (field.widget === "products") node[field.key] = [];
      else if (field.widget === "number" || field.widget === "integer" || field.widget === "segment") node[field.key] = null;
      else node[field.key] = "";
    });
    if (type.birthday) {
      node.op = "within_next_days";
      node.value = 7;
    }
    if (type.comparison && !type.comparison.optional) this.resetComparison(node, node);
    return node;
  };

  /* The kind of value a condition (or property filter) compares, and the choices it offers. */
  Builder.prototype.comparisonOf = function (type, node) {
    var spec = type.comparison;
    if (!spec) return null;
    var kind = spec.kind;
    var choices = spec.choices || [];
    if (spec.kind_from === "attribute") {
      var attribute = this.attributes[node.attribute] || this.catalog.attributes[0];
      kind = attribute.kind;
      choices = attribute.choices || [];
    } else if (spec.kind_from === "data_type") {
      kind = this.catalog.custom_kinds[node.data_type] || "string";
    }
    var operators = this.catalog.operators[kind] || [];
    if (spec.ops) {
      operators = operators.filter(function (op) { return spec.ops.indexOf(op.value) >= 0; });
    }
    return { kind: kind, choices: choices, operators: operators, optional: !!spec.optional, placeholder: spec.placeholder };
  };

  Builder.prototype.resetComparison = function (holder, node, comparison) {
    comparison = comparison || this.comparisonOf(this.types[node.type], node);
    if (!comparison) return;
    holder.op = comparison.operators.length ? comparison.operators[0].value : null;
    this.fitValue(holder, comparison);
  };

  /* Keep what can be kept of the value when the operator (or the kind of value) changes: a
     number stays a number, a date a date; anything else starts empty. */
  Builder.prototype.fitValue = function (holder, comparison) {
    var shape = valueShape(holder.op);
    var kind = comparison.kind;
    var current = holder.value;
    var first = Array.isArray(current) ? current[0] : current;
    function fits(value) {
      if (kind === "number" || kind === "count") return typeof value === "number" ? value : null;
      if (kind === "boolean") return typeof value === "boolean" ? value : true;
      if (kind === "date" || kind === "datetime") return typeof value === "string" && /^\d{4}-\d\d-\d\d/.test(value) ? value : null;
      if (comparison.choices.length) {
        var known = comparison.choices.some(function (choice) { return choice.value === value; });
        return known ? value : comparison.choices[0].value;
      }
      return typeof value === "string" ? value : "";
    }
    if (shape === "none") delete holder.value;
    else if (shape === "pair") holder.value = Array.isArray(current) && current.length === 2 ? current.map(fits) : [fits(first), null];
    else if (shape === "list") {
      var items = Array.isArray(current) ? current : [first];
      holder.value = items.filter(function (v) { return typeof v === "string" && v !== ""; });
    } else if (shape === "days") holder.value = typeof first === "number" ? first : 7;
    else holder.value = fits(first);
  };

  // --- drawing -----------------------------------------------------------------------------------

  Builder.prototype.render = function () {
    this.tree.textContent = "";
    this.tree.appendChild(this.renderGroup(this.definition, "", null, -1));
  };

  Builder.prototype.renderGroup = function (node, path, parent, index) {
    var self = this;
    var kind = groupKind(node);
    var children = node[kind];
    var box = el("div", { className: "sb-group sb-group-" + kind, "data-path": path });
    var header = el("div", { className: "sb-group-header" }, [
      select(this.catalog.groups, kind, function (value) {
        var list = node[kind];
        delete node[kind];
        node[value] = list;
        self.restructured();
      }, { "aria-label": "Match", className: "sb-group-kind" }),
      el("span", { className: "sb-group-hint quiet", text: this.groupHint(kind, children.length) }),
      el("button", { type: "button", className: "button sb-add-condition", text: "+ Condition", onclick: function () {
        children.push(self.defaultCondition("attribute"));
        self.restructured();
      } }),
      el("button", { type: "button", className: "button sb-add-group", text: "+ Group", onclick: function () {
        children.push({ any: [] });
        self.restructured();
      } }),
      parent ? el("button", { type: "button", className: "sb-remove", title: "Remove this group", "aria-label": "Remove this group", text: "×", onclick: function () {
        parent.splice(index, 1);
        self.restructured();
      } }) : null,
    ]);
    box.appendChild(header);
    box.appendChild(el("ul", { className: "sb-problems errorlist" }));
    var list = el("div", { className: "sb-children" });
    children.forEach(function (child, childIndex) {
      var p = childPath(path, kind, childIndex);
      list.appendChild(isGroup(child) ? self.renderGroup(child, p, children, childIndex) : self.renderCondition(child, p, children, childIndex));
    });
    box.appendChild(list);
    return box;
  };

  Builder.prototype.groupHint = function (kind, count) {
    if (count) return { all: "all of these hold", any: "at least one holds", none: "none of these holds" }[kind];
    return kind === "any" ? "(empty: matches nobody)" : "(empty: matches everyone)";
  };

  Builder.prototype.typeOptions = function () {
    var groups = [];
    var byCategory = {};
    this.catalog.types.forEach(function (type) {
      if (!byCategory[type.category]) {
        byCategory[type.category] = { group: type.category, options: [] };
        groups.push(byCategory[type.category]);
      }
      byCategory[type.category].options.push({ value: type.type, label: type.label });
    });
    return groups;
  };

  Builder.prototype.renderCondition = function (node, path, parent, index) {
    var self = this;
    var type = this.types[node.type];
    var box = el("div", { className: "sb-condition", "data-path": path, "data-type": node.type || "" });
    var line = el("div", { className: "sb-line" });
    box.appendChild(line);
    if (!type) {
      line.appendChild(el("span", { text: "Unknown condition " + JSON.stringify(node) + " — " }));
      line.appendChild(el("button", { type: "button", className: "sb-remove", text: "×", onclick: function () {
        parent.splice(index, 1);
        self.restructured();
      } }));
      return box;
    }
    line.appendChild(select(this.typeOptions(), node.type, function (value) {
      parent[index] = self.defaultCondition(value);
      self.restructured();
    }, { className: "sb-type", "aria-label": "Condition" }));
    type.fields.forEach(function (field) { line.appendChild(self.renderField(node, field, type)); });
    var comparison = this.comparisonOf(type, node);
    if (comparison) this.renderComparison(line, node, comparison);
    if (type.birthday) this.renderBirthday(line, node);
    if (type.window) line.appendChild(this.renderWindow(node));
    line.appendChild(el("button", { type: "button", className: "sb-remove", title: "Remove this condition", "aria-label": "Remove this condition", text: "×", onclick: function () {
      parent.splice(index, 1);
      self.restructured();
    } }));
    if (type.properties) box.appendChild(this.renderProperties(node));
    box.appendChild(el("ul", { className: "sb-problems errorlist" }));
    return box;
  };

  Builder.prototype.labelled = function (text, input) {
    return el("label", { className: "sb-field" }, [text ? el("span", { className: "sb-label", text: text }) : null, input]);
  };

  Builder.prototype.setOrDelete = function (holder, key, value, required) {
    if ((value === null || value === "" || (Array.isArray(value) && !value.length)) && required === false) delete holder[key];
    else holder[key] = value;
    this.changed();
  };

  Builder.prototype.renderField = function (node, field, type) {
    var self = this;
    var widget = field.widget;
    var input;
    if (widget === "attribute") {
      input = select(this.catalog.attributes, node[field.key], function (value) {
        node[field.key] = value;
        self.resetComparison(node, node);
        self.restructured();
      }, { className: "sb-attribute" });
    } else if (widget === "select") {
      var options = field.required === false ? [{ value: "", label: field.empty || "—" }].concat(field.options) : field.options;
      input = select(options, node[field.key], function (value) {
        var before = self.comparisonOf(type, node);
        self.setOrDelete(node, field.key, value, field.required);
        var after = self.comparisonOf(type, node);
        if (before && after && before.kind !== after.kind) {
          self.resetComparison(node, node, after);
          self.restructured();
        }
      }, { "data-key": field.key });
    } else if (widget === "boolean") {
      input = select(field.options, String(node[field.key] !== false), function (value) {
        self.setOrDelete(node, field.key, value === "true", field.required);
      }, { "data-key": field.key });
    } else if (widget === "number" || widget === "integer") {
      input = el("input", { type: "number", step: widget === "integer" ? "1" : field.step || "any", min: field.min, max: field.max, placeholder: field.placeholder, "data-key": field.key });
      input.value = node[field.key] === undefined || node[field.key] === null ? "" : node[field.key];
      input.addEventListener("input", function () {
        var value = input.value === "" ? null : widget === "integer" ? parseInt(input.value, 10) : Number(input.value);
        self.setOrDelete(node, field.key, value, field.required);
      });
    } else if (widget === "segment") {
      input = this.segmentSelect(node, field);
    } else if (widget === "products") {
      input = this.tagEditor(node[field.key] || [], function (values) {
        self.setOrDelete(node, field.key, values, field.required);
      }, { kind: "products", placeholder: "product id, then Enter" });
    } else {
      // text, event, custom_attribute
      var suggest = widget === "event" ? "events" : widget === "custom_attribute" ? "attributes" : null;
      input = el("input", { type: "text", placeholder: field.placeholder || (widget === "event" ? "event name" : ""), maxlength: field.maxlength, "data-key": field.key, className: "sb-text" });
      input.value = node[field.key] || "";
      if (suggest) this.attachSuggestions(input, suggest);
      input.addEventListener("input", function () {
        self.setOrDelete(node, field.key, input.value, field.required);
      });
      if (widget === "custom_attribute") {
        input.addEventListener("change", function () {
          var found = (self.suggestions.attributes || []).filter(function (item) { return item.name === input.value; })[0];
          if (found && found.data_type !== node.data_type) {
            node.data_type = found.data_type;
            self.resetComparison(node, node);
            self.restructured();
          }
        });
      }
      if (widget === "event") {
        input.addEventListener("change", function () { self.restructured(); });
      }
    }
    return this.labelled(field.label, input);
  };

  Builder.prototype.segmentSelect = function (node, field) {
    var self = this;
    var input = select([{ value: "", label: "— choose a segment —" }], node[field.key], function (value) {
      self.setOrDelete(node, field.key, value === "" ? null : parseInt(value, 10), field.required);
    }, { "data-key": field.key });
    this.suggest("segments", {}, function (items) {
      items.forEach(function (item) {
        if (String(item.id) === String(self.config.segment)) return;  // not itself
        input.appendChild(el("option", { value: String(item.id), text: item.name }));
      });
      input.value = node[field.key] === null || node[field.key] === undefined ? "" : String(node[field.key]);
    });
    return input;
  };

  Builder.prototype.renderComparison = function (line, holder, comparison) {
    var self = this;
    var operators = comparison.operators.slice();
    if (comparison.optional) operators.unshift({ value: "", label: "at least once" });
    var current = holder.op === undefined || holder.op === null ? "" : holder.op;
    line.appendChild(select(operators, current, function (value) {
      if (value === "") {
        delete holder.op;
        delete holder.value;
      } else {
        holder.op = value;
        if (comparison.optional && holder.value === undefined) holder.value = 1;
        self.fitValue(holder, comparison);
      }
      self.restructured();
    }, { className: "sb-op", "aria-label": "Operator" }));
    if (holder.op) this.renderValue(line, holder, comparison);
    if (comparison.kind === "count" && holder.op) line.appendChild(el("span", { className: "sb-unit", text: "times" }));
  };

  Builder.prototype.renderValue = function (line, holder, comparison) {
    var self = this;
    var shape = valueShape(holder.op);
    if (shape === "none") return;
    if (shape === "list") {
      var listOptions = comparison.choices.length ? comparison.choices : null;
      line.appendChild(this.tagEditor(holder.value || [], function (values) {
        holder.value = values;
        self.changed();
      }, { choices: listOptions, placeholder: "a value, then Enter" }));
      return;
    }
    if (shape === "days") {
      var days = el("input", { type: "number", min: "0", step: "1", className: "sb-days", "aria-label": "days" });
      days.value = holder.value === null || holder.value === undefined ? "" : holder.value;
      days.addEventListener("input", function () {
        holder.value = days.value === "" ? null : parseInt(days.value, 10);
        self.changed();
      });
      line.appendChild(days);
      line.appendChild(el("span", { className: "sb-unit", text: "days" }));
      return;
    }
    if (shape === "pair") {
      var pair = Array.isArray(holder.value) ? holder.value : [null, null];
      holder.value = pair;
      line.appendChild(this.scalarInput(comparison, pair[0], function (value) { pair[0] = value; self.changed(); }, "from"));
      line.appendChild(el("span", { className: "sb-unit", text: "and" }));
      line.appendChild(this.scalarInput(comparison, pair[1], function (value) { pair[1] = value; self.changed(); }, "to"));
      return;
    }
    line.appendChild(this.scalarInput(comparison, holder.value, function (value) {
      holder.value = value;
      self.changed();
    }, "value"));
  };

  /* One value input fitting the kind of value: a select for choices and booleans, a date picker for
     dates and times, a number input for numbers and counts, text otherwise. */
  Builder.prototype.scalarInput = function (comparison, value, onchange, label) {
    var kind = comparison.kind;
    if (kind === "boolean") {
      return select([{ value: "true", label: "true" }, { value: "false", label: "false" }], String(value !== false), function (v) { onchange(v === "true"); }, { "aria-label": label, className: "sb-value" });
    }
    if (comparison.choices.length && kind === "string") {
      return select(comparison.choices, value, onchange, { "aria-label": label, className: "sb-value" });
    }
    var input;
    if (kind === "number" || kind === "count") {
      input = el("input", { type: "number", step: kind === "count" ? "1" : "any", min: kind === "count" ? "0" : null, className: "sb-value sb-number", "aria-label": label });
      input.value = value === null || value === undefined ? "" : value;
      input.addEventListener("input", function () {
        onchange(input.value === "" ? null : kind === "count" ? parseInt(input.value, 10) : Number(input.value));
      });
      return input;
    }
    if (kind === "date" || kind === "datetime") {
      input = el("input", { type: "date", className: "sb-value sb-date", "aria-label": label });
      input.value = typeof value === "string" ? value.slice(0, 10) : "";
      input.addEventListener("input", function () { onchange(input.value || null); });
      return input;
    }
    input = el("input", { type: "text", className: "sb-value sb-text", placeholder: comparison.placeholder || "", "aria-label": label });
    input.value = value === null || value === undefined ? "" : value;
    input.addEventListener("input", function () { onchange(input.value); });
    return input;
  };

  /* A list of values as removable chips and an input that adds one on Enter or comma (or, with
     choices, checkboxes). */
  Builder.prototype.tagEditor = function (values, onchange, options) {
    var self = this;
    values = values.slice();
    var box = el("span", { className: "sb-tags" });
    if (options.choices) {
      options.choices.forEach(function (choice) {
        var box2 = el("input", { type: "checkbox", value: choice.value });
        box2.checked = values.indexOf(choice.value) >= 0;
        box2.addEventListener("change", function () {
          var at = values.indexOf(choice.value);
          if (box2.checked && at < 0) values.push(choice.value);
          if (!box2.checked && at >= 0) values.splice(at, 1);
          onchange(values.slice());
        });
        box.appendChild(el("label", { className: "sb-choice" }, [box2, " " + choice.label]));
      });
      return box;
    }
    var chips = el("span", { className: "sb-chips" });
    function draw() {
      chips.textContent = "";
      values.forEach(function (value, at) {
        chips.appendChild(el("span", { className: "sb-chip" }, [value, el("button", { type: "button", className: "sb-chip-remove", "aria-label": "Remove " + value, text: "×", onclick: function () {
          values.splice(at, 1);
          draw();
          onchange(values.slice());
        } })]));
      });
    }
    var input = el("input", { type: "text", className: "sb-tag-input", placeholder: options.placeholder || "" });
    if (options.kind) this.attachSuggestions(input, options.kind);
    function add() {
      input.value.split(",").forEach(function (part) {
        var value = part.trim();
        if (value && values.indexOf(value) < 0) values.push(value);
      });
      input.value = "";
      draw();
      onchange(values.slice());
    }
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === ",") {
        event.preventDefault();
        add();
      }
    });
    input.addEventListener("change", function () { if (input.value.trim()) add(); });
    draw();
    box.appendChild(chips);
    box.appendChild(input);
    return box;
  };

  Builder.prototype.renderWindow = function (node) {
    var self = this;
    var box = el("span", { className: "sb-window" });
    var window_ = node.window || null;
    var mode = !window_ ? "" : window_.last !== undefined ? "last" : "between";
    box.appendChild(select([
      { value: "", label: "at any time" },
      { value: "last", label: "in the last" },
      { value: "between", label: "between dates" },
    ], mode, function (value) {
      if (value === "") delete node.window;
      else if (value === "last") node.window = { last: 30, unit: "days" };
      else node.window = { from: null, to: null };
      self.restructured();
    }, { className: "sb-window-mode", "aria-label": "When" }));
    if (mode === "last") {
      var amount = el("input", { type: "number", min: "1", step: "1", className: "sb-window-last", "aria-label": "how many" });
      amount.value = window_.last === null ? "" : window_.last;
      amount.addEventListener("input", function () {
        window_.last = amount.value === "" ? null : parseInt(amount.value, 10);
        self.changed();
      });
      box.appendChild(amount);
      box.appendChild(select(this.catalog.window_units.map(function (unit) { return { value: unit, label: unit }; }), window_.unit || "days", function (value) {
        window_.unit = value;
        self.changed();
      }, { className: "sb-window-unit", "aria-label": "unit" }));
    } else if (mode === "between") {
      ["from", "to"].forEach(function (key) {
        var input = el("input", { type: "date", className: "sb-window-" + key, "aria-label": key });
        input.value = window_[key] ? String(window_[key]).slice(0, 10) : "";
        input.addEventListener("input", function () {
          if (input.value) window_[key] = input.value;
          else delete window_[key];
          self.changed();
        });
        box.appendChild(el("span", { className: "sb-unit", text: key === "from" ? "from" : "to" }));
        box.appendChild(input);
      });
    }
    return box;
  };

  Builder.prototype.renderBirthday = function (line, node) {
    var self = this;
    line.appendChild(select([
      { value: "today", label: "is today" },
      { value: "within_next_days", label: "is in the next N days" },
      { value: "on", label: "is on" },
      { value: "in_month", label: "is in month" },
    ], node.op, function (value) {
      node.op = value;
      if (value === "today") delete node.value;
      else if (value === "within_next_days") node.value = 7;
      else if (value === "on") node.value = { month: 1, day: 1 };
      else node.value = 1;
      self.restructured();
    }, { className: "sb-op", "aria-label": "Birthday" }));
    var months = this.catalog.months;
    if (node.op === "within_next_days") {
      line.appendChild(this.scalarInput({ kind: "count", choices: [] }, node.value, function (value) { node.value = value; self.changed(); }, "days"));
      line.appendChild(el("span", { className: "sb-unit", text: "days" }));
    } else if (node.op === "in_month") {
      line.appendChild(select(months, node.value, function (value) { node.value = parseInt(value, 10); self.changed(); }, { "aria-label": "month" }));
    } else if (node.op === "on") {
      var on = node.value && typeof node.value === "object" ? node.value : (node.value = { month: 1, day: 1 });
      line.appendChild(select(months, on.month, function (value) { on.month = parseInt(value, 10); self.changed(); }, { "aria-label": "month" }));
      var day = el("input", { type: "number", min: "1", max: "31", step: "1", className: "sb-number", "aria-label": "day" });
      day.value = on.day;
      day.addEventListener("input", function () { on.day = day.value === "" ? null : parseInt(day.value, 10); self.changed(); });
      line.appendChild(day);
    }
  };

  Builder.prototype.renderProperties = function (node) {
    var self = this;
    var box = el("div", { className: "sb-properties" });
    var filters = node.properties || [];
    filters.forEach(function (filter, index) {
      var row = el("div", { className: "sb-line sb-property" }, [el("span", { className: "sb-unit", text: "where property" })]);
      var key = el("input", { type: "text", className: "sb-text sb-property-key", placeholder: "property", "aria-label": "property" });
      key.value = filter.property || "";
      self.attachSuggestions(key, "properties", node.event);
      key.addEventListener("input", function () { filter.property = key.value; self.changed(); });
      key.addEventListener("change", function () {
        var found = (self.suggestions["properties:" + node.event] || []).filter(function (item) { return item.name === key.value; })[0];
        if (found && found.data_type !== filter.data_type) {
          filter.data_type = found.data_type;
          self.resetPropertyComparison(filter);
          self.restructured();
        }
      });
      row.appendChild(key);
      row.appendChild(select(Object.keys(self.catalog.custom_kinds).map(function (t) { return { value: t, label: t }; }), filter.data_type, function (value) {
        filter.data_type = value;
        self.resetPropertyComparison(filter);
        self.restructured();
      }, { "aria-label": "property type", className: "sb-property-type" }));
      self.renderComparison(row, filter, self.propertyComparison(filter));
      row.appendChild(el("button", { type: "button", className: "sb-remove", title: "Remove this property filter", "aria-label": "Remove this property filter", text: "×", onclick: function () {
        filters.splice(index, 1);
        if (!filters.length) delete node.properties;
        self.restructured();
      } }));
      box.appendChild(row);
    });
    box.appendChild(el("button", { type: "button", className: "button sb-add-property", text: "+ Property filter", onclick: function () {
      var filter = { property: "", data_type: "string" };
      self.resetPropertyComparison(filter);
      node.properties = filters.concat([filter]);
      self.restructured();
    } }));
    return box;
  };

  Builder.prototype.propertyComparison = function (filter) {
    var kind = this.catalog.custom_kinds[filter.data_type] || "string";
    return { kind: kind, choices: [], operators: this.catalog.operators[kind], optional: false };
  };

  Builder.prototype.resetPropertyComparison = function (filter) {
    var comparison = this.propertyComparison(filter);
    filter.op = comparison.operators[0].value;
    delete filter.value;
    this.fitValue(filter, comparison);
  };

  // --- suggestions from the workspace's data -------------------------------------------------------

  Builder.prototype.suggest = function (what, params, callback) {
    var workspace = this.workspace();
    if (!workspace) return;
    var key = what + (params.event !== undefined ? ":" + params.event : "");
    var self = this;
    if (this.suggestions[key]) {
      callback(this.suggestions[key]);
      return;
    }
    var query = new URLSearchParams({ workspace: workspace, what: what });
    Object.keys(params).forEach(function (name) { query.set(name, params[name]); });
    fetch(this.config.urls.suggest + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { items: [] }; })
      .then(function (body) {
        self.suggestions[key] = body.items || [];
        callback(self.suggestions[key]);
      })
      .catch(function () { /* suggestions are a convenience */ });
  };

  Builder.prototype.attachSuggestions = function (input, what, event) {
    var self = this;
    if (what === "properties" && !event) return;
    var listKey = what + (event ? ":" + event : "");
    var id = this.datalists[listKey];
    if (!id) {
      id = "sb-" + this.uid + "-" + Object.keys(this.datalists).length;
      this.datalists[listKey] = id;
      var list = el("datalist", { id: id });
      this.root.appendChild(list);
      this.suggest(what, event ? { event: event } : {}, function (items) {
        items.forEach(function (item) {
          var value = typeof item === "string" ? item : item.name;
          list.appendChild(el("option", { value: value, label: typeof item === "string" ? null : item.data_type }));
        });
      });
    }
    input.setAttribute("list", id);
    input.setAttribute("autocomplete", "off");
  };

  // --- the live estimate and preview ------------------------------------------------------------------

  Builder.prototype.estimateSoon = function (delay) {
    var self = this;
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(function () { self.estimate(); }, delay);
  };

  Builder.prototype.csrf = function () {
    var form = this.root.closest("form");
    var input = form ? form.querySelector("input[name=csrfmiddlewaretoken]") : null;
    return input ? input.value : "";
  };

  Builder.prototype.post = function (url, signal) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      signal: signal,
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": this.csrf() },
      body: JSON.stringify({ workspace: this.workspace(), segment: this.config.segment, definition: this.definition }),
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        body.httpStatus = response.status;
        return body;
      });
    });
  };

  Builder.prototype.estimate = function () {
    var self = this;
    var sizeValue = this.root.querySelector(".sb-size-value");
    var sizeAge = this.root.querySelector(".sb-size-age");
    if (!this.workspace()) {
      sizeValue.textContent = "Choose a workspace to see the size.";
      sizeAge.textContent = "";
      return;
    }
    if (this.pending) this.pending.abort();
    var controller = window.AbortController ? new AbortController() : null;
    this.pending = controller;
    this.root.classList.add("sb-busy");
    this.root.querySelector(".sb-preview-table").classList.add("sb-stale");
    sizeAge.textContent = "counting…";
    var signal = controller ? controller.signal : undefined;
    this.post(this.config.urls.estimate, signal).then(function (body) {
      self.root.classList.remove("sb-busy");
      self.showProblems(body.problems || []);
      if (body.problems && body.problems.length) {
        self.sizeAt = null;
        sizeValue.textContent = "Incomplete";
        sizeAge.textContent = "fix " + (body.problems.length === 1 ? "the problem" : "the " + body.problems.length + " problems") + " marked below to see the size";
        self.showPreview(null, "");
        return;
      }
      if (body.error || body.size === undefined) {
        sizeValue.textContent = "—";
        sizeAge.textContent = body.error || "Could not count (" + body.httpStatus + ").";
        return;
      }
      sizeValue.textContent = body.size.toLocaleString() + (body.size === 1 ? " person" : " people");
      self.sizeAt = Date.now() - body.age_seconds * 1000;
      self.tookMs = body.took_ms;
      self.tickAge();
      self.preview(signal);
    }).catch(function (error) {
      if (error && error.name === "AbortError") return;
      self.root.classList.remove("sb-busy");
      sizeAge.textContent = "Could not count: " + error;
    });
  };

  Builder.prototype.tickAge = function () {
    if (!this.sizeAt) return;
    var seconds = Math.max(0, Math.round((Date.now() - this.sizeAt) / 1000));
    var ago = seconds < 1 ? "just now" : seconds === 1 ? "1 s ago" : seconds < 120 ? seconds + " s ago" : Math.round(seconds / 60) + " min ago";
    this.root.querySelector(".sb-size-age").textContent = "computed " + ago + " (the count took " + this.tookMs + " ms)";
  };

  Builder.prototype.preview = function (signal) {
    var self = this;
    if (!this.config.can_preview) {
      this.showPreview(null, "Previewing people needs permission to view profiles.");
      return;
    }
    this.post(this.config.urls.preview, signal).then(function (body) {
      if (body.error) self.showPreview(null, body.error);
      else self.showPreview(body.profiles || [], "");
    }).catch(function (error) {
      if (error && error.name !== "AbortError") self.showPreview(null, "Could not load the preview.");
    });
  };

  Builder.prototype.showPreview = function (profiles, note) {
    var table = this.root.querySelector(".sb-preview-table");
    table.classList.remove("sb-stale");
    var body = table.querySelector("tbody");
    var noteBox = this.root.querySelector(".sb-preview-note");
    body.textContent = "";
    if (!profiles) {
      table.hidden = true;
      noteBox.textContent = note;
      return;
    }
    table.hidden = !profiles.length;
    noteBox.textContent = profiles.length ? "In profile id order; each links to the profile page." : "Nobody matches yet.";
    profiles.forEach(function (profile) {
      body.appendChild(el("tr", {}, [
        el("td", {}, [el("a", { href: profile.url, text: profile.name || "#" + profile.id })]),
        el("td", { text: profile.external_id || "anonymous" }),
        el("td", { text: profile.email || "" }),
        el("td", { text: profile.country || "" }),
        el("td", { text: profile.last_seen ? profile.last_seen.slice(0, 16).replace("T", " ") : "never" }),
      ]));
    });
  };

  /* Each problem next to its node (the whole definition's at the top). */
  Builder.prototype.showProblems = function (problems) {
    var root = this.root;
    root.querySelectorAll(".sb-problems").forEach(function (list) { list.textContent = ""; });
    root.querySelectorAll(".sb-has-problem").forEach(function (node) { node.classList.remove("sb-has-problem"); });
    problems.forEach(function (problem) {
      var target = null;
      root.querySelectorAll("[data-path]").forEach(function (node) {
        if (node.getAttribute("data-path") === problem.path) target = node;
      });
      if (!target) target = root.querySelector(".sb-group");
      if (!target) return;
      target.classList.add("sb-has-problem");
      var list = target.querySelector(":scope > .sb-problems");
      if (list) list.appendChild(el("li", { text: problem.message }));
    });
  };

  function start() {
    document.querySelectorAll(".segment-builder").forEach(function (root) {
      if (root.dataset.started) return;
      root.dataset.started = "1";
      new Builder(root).start();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
