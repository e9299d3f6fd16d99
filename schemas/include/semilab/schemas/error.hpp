#pragma once
// Error values of the wire contract. Every decoder returns one of these instead of throwing.
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <type_traits>

namespace semilab::schemas {

enum class errc {
  ok = 0,
  truncated = 1,               // input ends before a declared field or length
  bad_magic,                   // not a semilab batch frame
  unsupported_version,         // frame version this reader has no decoder for
  frame_too_large,             // whole frame over the configured limit
  body_too_large,              // declared uncompressed body over the limit
  too_many_records,            // declared record count over the limit
  bad_header,                  // header field out of range (ids, ranges, lengths)
  checksum_mismatch,           // SHA-256 over header and body differs
  unknown_codec,               // codec or dictionary this reader does not have
  decompress_failed,           // zstd refused the body
  decompressed_size_mismatch,  // body decompressed to another size than declared
  bad_body,                    // record section malformed
  record_count_mismatch,       // records or ranges disagree with the header
  trailing_bytes,              // bytes after the signature field
  bad_value,                   // a value out of range (text too long, bad decimal)
  bad_topic,                   // MQTT topic not of the semilab/v1 layout
  bad_json,                    // ack / state message is not the expected JSON
  bad_id,                      // agent, site or instance id not allowed
  unknown_dictionary,          // frame compressed with a dictionary this reader has not got (yet)
  bad_dictionary,              // bytes that are not a usable zstd dictionary
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

template <class T>
using result = boost::system::result<T>;

}  // namespace semilab::schemas

template <>
struct boost::system::is_error_code_enum<semilab::schemas::errc> : std::true_type {};
