// JSON values copied out of the parser (its string_views die at the next parse): the one place
// the list query's parameters meet simdjson's parser.
#include <simdjson.h>

#include "proxy/origin/list_internal.hpp"

namespace pitstop::origin::list {

namespace dom = simdjson::dom;

namespace {

std::string number_text(const Val& v) {
  switch (v.kind) {
    case Val::Kind::integer:
      return std::to_string(v.i);
    case Val::Kind::unsigned_integer:
      return std::to_string(v.u);
    case Val::Kind::floating:
      return py_float_repr(v.d);
    default:
      return {};
  }
}

dom::parser& json_parser() {
  // One per thread: dom::parser is not thread-safe, and reusing it keeps its buffers.
  thread_local dom::parser parser(kMaxParamBytes);
  return parser;
}

}  // namespace

std::string json_text(dom::element e) {
  std::string s = simdjson::minify(e);
  return s;
}

std::string py_str(const Val& v) {
  switch (v.kind) {
    case Val::Kind::null:
      return {};
    case Val::Kind::boolean:
      return v.b ? "True" : "False";
    case Val::Kind::string:
      return v.s;
    default:
      return number_text(v);
  }
}

std::string spliced_text(const Val& v) {
  switch (v.kind) {
    case Val::Kind::boolean:
      return v.b ? "1" : "0";
    case Val::Kind::string:
      return v.s;
    case Val::Kind::null:
      return {};
    default:
      return number_text(v);
  }
}

Val to_val(dom::element e, std::size_t max_items, bool copy_items) {
  Val v;
  switch (e.type()) {
    case dom::element_type::NULL_VALUE:
      v.kind = Val::Kind::null;
      break;
    case dom::element_type::BOOL:
      v.kind = Val::Kind::boolean;
      v.b = e.get_bool().value_unsafe();
      break;
    case dom::element_type::INT64:
      v.kind = Val::Kind::integer;
      v.i = e.get_int64().value_unsafe();
      break;
    case dom::element_type::UINT64:
      v.kind = Val::Kind::unsigned_integer;
      v.u = e.get_uint64().value_unsafe();
      break;
    case dom::element_type::DOUBLE:
      v.kind = Val::Kind::floating;
      v.d = e.get_double().value_unsafe();
      break;
    case dom::element_type::STRING:
      v.kind = Val::Kind::string;
      v.s = std::string(e.get_string().value_unsafe());
      break;
    case dom::element_type::ARRAY: {
      v.kind = Val::Kind::array;
      dom::array a = e.get_array().value_unsafe();
      v.size = a.size();
      v.copied = copy_items && v.size <= max_items;
      if (v.copied) {
        v.items.reserve(v.size);
        for (dom::element child : a) v.items.push_back(to_val(child, max_items, false));
      }
      break;
    }
    case dom::element_type::OBJECT:
      v.kind = Val::Kind::object;
      v.size = e.get_object().value_unsafe().size();
      break;
  }
  if (!v.is_scalar() || v.is_number()) v.json = json_text(e);
  return v;
}

std::string shown(const Val& v) {
  if (v.is_string()) return quote(v.s);
  if (v.kind == Val::Kind::null) return "null";
  if (v.kind == Val::Kind::boolean) return v.b ? "true" : "false";
  return quote(v.json);
}

Result<dom::element> parse_json(std::string_view parameter, const std::string& text) {
  if (text.size() > kMaxParamBytes) return fail(parameter, std::string(parameter) + " is too long");
  dom::element root;
  // parse(const std::string&) copies into a padded buffer when the string lacks SIMDJSON_PADDING.
  if (auto err = json_parser().parse(text).get(root))
    return fail(parameter, std::string(parameter) + " is not valid JSON: " + simdjson::error_message(err));
  return root;
}

bool json_falsy(dom::element e) {
  switch (e.type()) {
    case dom::element_type::NULL_VALUE:
      return true;
    case dom::element_type::BOOL:
      return !e.get_bool().value_unsafe();
    case dom::element_type::INT64:
      return e.get_int64().value_unsafe() == 0;
    case dom::element_type::UINT64:
      return e.get_uint64().value_unsafe() == 0;
    case dom::element_type::DOUBLE:
      return e.get_double().value_unsafe() == 0;
    case dom::element_type::STRING:
      return e.get_string().value_unsafe().empty();
    case dom::element_type::ARRAY:
      return e.get_array().value_unsafe().size() == 0;
    case dom::element_type::OBJECT:
      return e.get_object().value_unsafe().size() == 0;
  }
  return false;
}

}  // namespace pitstop::origin::list
