#include <semilab/schemas/error.hpp>

namespace semilab::schemas {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "semilab.schemas"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::truncated: return "frame truncated";
      case errc::bad_magic: return "not a semilab batch frame (bad magic)";
      case errc::unsupported_version: return "unsupported version";
      case errc::frame_too_large: return "frame larger than the limit";
      case errc::body_too_large: return "declared body size over the limit";
      case errc::too_many_records: return "declared record count over the limit";
      case errc::bad_header: return "frame header field out of range";
      case errc::checksum_mismatch: return "checksum mismatch";
      case errc::unknown_codec: return "unknown codec or dictionary";
      case errc::decompress_failed: return "body decompression failed";
      case errc::decompressed_size_mismatch: return "body decompressed to another size than declared";
      case errc::bad_body: return "record section malformed";
      case errc::record_count_mismatch: return "records disagree with the header";
      case errc::trailing_bytes: return "bytes after the end of the frame";
      case errc::bad_value: return "value out of range";
      case errc::bad_topic: return "topic is not of the semilab/v1 layout";
      case errc::bad_json: return "malformed JSON message";
      case errc::bad_id: return "id not allowed (1-64 of A-Z a-z 0-9 . _ -)";
      case errc::unknown_dictionary: return "frame compressed with a dictionary not known yet";
      case errc::bad_dictionary: return "not a usable zstd dictionary";
    }
    return "unknown schemas error " + std::to_string(ev);
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category c;
  return c;
}

}  // namespace semilab::schemas
