// ONC RPC record marking, XDR and the VXI-11 message codecs (drivers/src/oncrpc.hpp,
// vxi11_proto.hpp): golden byte vectors written from RFC 4506/5531 and the VXI-11 vxi11.x file,
// round trips, and malformed input (every truncation, oversized lengths, bad enums).
#include "oncrpc.hpp"
#include "vxi11_proto.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace semilab::drivers;
namespace rpc = semilab::drivers::oncrpc;
namespace vx = semilab::drivers::vxi11;

namespace {

// "80 00 00 03 61" -> bytes
std::string hex(std::string_view h) {
  std::string out;
  int hi = -1;
  for (char c : h) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (v < 0) continue;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>(hi * 16 + v));
      hi = -1;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("xdr: 32-bit items big-endian, opaque padded to 4 bytes") {
  std::string out;
  rpc::xdr_writer w(out);
  w.u32(0x01020304u);
  w.i32(-2);
  w.boolean(true);
  w.opaque("inst0");
  w.opaque("gpib0,22");
  w.opaque("");
  CHECK(out == hex("01020304 fffffffe 00000001 00000005 696e737430 000000 00000008 677069623"
                   "02c3232 00000000"));

  rpc::xdr_reader r(out);
  std::uint32_t u = 0;
  std::int32_t i = 0;
  bool b = false;
  std::string_view s1, s2, s3;
  REQUIRE((r.u32(u) && r.i32(i) && r.boolean(b) && r.opaque(s1) && r.opaque(s2) && r.opaque(s3)));
  CHECK(u == 0x01020304u);
  CHECK(i == -2);
  CHECK(b);
  CHECK(s1 == "inst0");
  CHECK(s2 == "gpib0,22");
  CHECK(s3.empty());
  CHECK(r.remaining() == 0);
  CHECK(!r.u32(u));
  CHECK(r.failed());
}

TEST_CASE("xdr: malformed input fails without reading past the end") {
  std::uint32_t u = 0;
  std::string_view v;
  bool b = false;
  CHECK(!rpc::xdr_reader(hex("010203")).u32(u));
  CHECK(!rpc::xdr_reader(hex("00000002")).boolean(b));                 // bool must be 0 or 1
  CHECK(!rpc::xdr_reader(hex("ffffffff 41414141")).opaque(v));         // length beyond input
  CHECK(!rpc::xdr_reader(hex("00000005 4142434445")).opaque(v));       // padding missing
  const std::string abcd = hex("00000004 41424344");  // outlives the view opaque() returns
  CHECK(!rpc::xdr_reader(abcd).opaque(v, 3));                          // over the caller's max
  CHECK(rpc::xdr_reader(abcd).opaque(v, 4));
  CHECK(v == "ABCD");
  // A failed reader stays failed.
  rpc::xdr_reader r(hex("00"));
  CHECK(!r.u32(u));
  CHECK(!r.u32(u));
}

TEST_CASE("record marking: framing, fragments, byte-by-byte, several records, limits") {
  CHECK(rpc::frame_record("abc") == hex("80000003 616263"));
  CHECK(rpc::frame_record("") == hex("80000000"));

  SUBCASE("two fragments make one record; fed one byte at a time") {
    std::string stream = hex("00000002 6869 80000003 212121");
    rpc::record_assembler a(100);
    std::string rec;
    for (std::size_t i = 0; i + 1 < stream.size(); ++i) {
      a.feed(stream.substr(i, 1));
      REQUIRE(a.next(rec) == rpc::record_assembler::status::need_more);
    }
    a.feed(stream.substr(stream.size() - 1));
    REQUIRE(a.next(rec) == rpc::record_assembler::status::complete);
    CHECK(rec == "hi!!!");
    CHECK(a.buffered() == 0);
  }
  SUBCASE("two records in one read, then leftovers") {
    rpc::record_assembler a(100);
    a.feed(rpc::frame_record("one") + rpc::frame_record("two") + hex("8000"));
    std::string rec;
    REQUIRE(a.next(rec) == rpc::record_assembler::status::complete);
    CHECK(rec == "one");
    REQUIRE(a.next(rec) == rpc::record_assembler::status::complete);
    CHECK(rec == "two");
    CHECK(a.next(rec) == rpc::record_assembler::status::need_more);
    CHECK(a.buffered() == 2);
  }
  SUBCASE("a record over the limit fails at its header, for good") {
    rpc::record_assembler a(8);
    a.feed(hex("ffffffff"));  // last fragment of 2 GiB - 1
    std::string rec;
    CHECK(a.next(rec) == rpc::record_assembler::status::too_long);
    a.feed(rpc::frame_record("ok"));
    CHECK(a.next(rec) == rpc::record_assembler::status::too_long);
    a.reset();
    a.feed(rpc::frame_record("ok"));
    CHECK(a.next(rec) == rpc::record_assembler::status::complete);
  }
  SUBCASE("fragments that add up over the limit") {
    rpc::record_assembler a(8);
    a.feed(hex("00000005 0102030405 00000004"));
    std::string rec;
    CHECK(a.next(rec) == rpc::record_assembler::status::too_long);
  }
  SUBCASE("empty fragments are legal") {
    rpc::record_assembler a(8);
    a.feed(hex("00000000 00000000 80000000"));
    std::string rec = "x";
    CHECK(a.next(rec) == rpc::record_assembler::status::complete);
    CHECK(rec.empty());
  }
}

TEST_CASE("rpc call: portmapper GETPORT golden bytes, decode round trip") {
  auto args = rpc::encode_mapping({vx::kCoreProgram, vx::kCoreVersion, rpc::kIpprotoTcp, 0});
  auto msg = rpc::encode_call(0x01020304u, rpc::kPmapProgram, rpc::kPmapVersion,
                              rpc::kPmapProcGetport, args);
  CHECK(msg == hex("01020304 00000000 00000002 000186a0 00000002 00000003"
                   "00000000 00000000 00000000 00000000"
                   "000607af 00000001 00000006 00000000"));
  auto c = rpc::decode_call(msg);
  REQUIRE(c.has_value());
  CHECK(c->xid == 0x01020304u);
  CHECK(c->prog == 100000u);
  CHECK(c->proc == 3u);
  rpc::pmap_mapping m;
  REQUIRE(rpc::decode_mapping(c->args, m));
  CHECK(m.prog == 0x0607AFu);
  CHECK(m.prot == 6u);
  // Every truncation of a call is rejected or decodes a shorter args view; never crashes.
  for (std::size_t n = 0; n < 40; ++n) CHECK(!rpc::decode_call(msg.substr(0, n)).has_value());
  CHECK(!rpc::decode_call(hex("00000001 00000001")).has_value());  // a reply is not a call
}

TEST_CASE("rpc reply: success, rejections, accept states, malformed") {
  std::string results = hex("0000d431");  // GETPORT -> 54321
  auto ok = rpc::encode_accepted_reply(7, rpc::accept_stat::success, results);
  CHECK(ok == hex("00000007 00000001 00000000 00000000 00000000 00000000 0000d431"));
  rpc::reply r;
  REQUIRE(!rpc::decode_reply(ok, 7, r));
  std::uint16_t port = 0;
  REQUIRE(rpc::decode_getport_result(r.results, port));
  CHECK(port == 54321);
  CHECK(!rpc::decode_getport_result(hex("00010000"), port));  // > 65535
  CHECK(!rpc::decode_getport_result(hex("0000"), port));

  CHECK(rpc::decode_reply(ok, 8, r) == rpc::rpc_errc::xid_mismatch);
  CHECK(rpc::decode_reply(rpc::encode_call(7, 1, 1, 1, {}), 7, r) == rpc::rpc_errc::not_a_reply);
  CHECK(rpc::decode_reply(rpc::encode_rpc_mismatch_reply(7), 7, r) == rpc::rpc_errc::rpc_mismatch);
  CHECK(rpc::decode_reply(hex("00000007 00000001 00000001 00000001 00000001"), 7, r) ==
        rpc::rpc_errc::auth_error);
  CHECK(rpc::decode_reply(rpc::encode_accepted_reply(7, rpc::accept_stat::prog_unavail), 7, r) ==
        rpc::rpc_errc::prog_unavail);
  CHECK(rpc::decode_reply(rpc::encode_accepted_reply(7, rpc::accept_stat::prog_mismatch, {}, 1, 1),
                          7, r) == rpc::rpc_errc::prog_mismatch);
  CHECK(rpc::decode_reply(rpc::encode_accepted_reply(7, rpc::accept_stat::proc_unavail), 7, r) ==
        rpc::rpc_errc::proc_unavail);
  CHECK(rpc::decode_reply(rpc::encode_accepted_reply(7, rpc::accept_stat::garbage_args), 7, r) ==
        rpc::rpc_errc::garbage_args);
  CHECK(rpc::decode_reply(rpc::encode_accepted_reply(7, rpc::accept_stat::system_err), 7, r) ==
        rpc::rpc_errc::system_err);
  // Unknown reply_stat / accept_stat, verifier body over 400 bytes, truncations.
  CHECK(rpc::decode_reply(hex("00000007 00000001 00000002"), 7, r) == rpc::rpc_errc::malformed_reply);
  CHECK(rpc::decode_reply(hex("00000007 00000001 00000000 00000000 00000000 00000009"), 7, r) ==
        rpc::rpc_errc::malformed_reply);
  CHECK(rpc::decode_reply(hex("00000007 00000001 00000000 00000000 00000194") + std::string(404, 'v') +
                              hex("00000000"),
                          7, r) == rpc::rpc_errc::malformed_reply);
  for (std::size_t n = 0; n < 24; ++n) CHECK(rpc::decode_reply(ok.substr(0, n), 7, r));
  // Error values read as text.
  CHECK(make_error_code(rpc::rpc_errc::prog_unavail).message().find("program") != std::string::npos);
}

TEST_CASE("vxi11 parameters: golden bytes of create_link, device_write, device_read") {
  CHECK(vx::encode(vx::create_link_parms{1, false, 0, "inst0"}) ==
        hex("00000001 00000000 00000000 00000005 696e737430 000000"));
  CHECK(vx::encode(vx::create_link_parms{1, true, 1000, "gpib0,22"}) ==
        hex("00000001 00000001 000003e8 00000008 677069623 02c3232"));
  CHECK(vx::encode(vx::device_write_parms{3, 10000, 0, vx::kFlagEnd, "*IDN?\n"}) ==
        hex("00000003 00002710 00000000 00000008 00000006 2a49444e3f0a 0000"));
  CHECK(vx::encode(vx::device_read_parms{3, 1024, 10000, 0, vx::kFlagTermCharSet, '\n'}) ==
        hex("00000003 00000400 00002710 00000000 00000080 0000000a"));
  CHECK(vx::encode(vx::generic_parms{3, 0, 0, 10000}) ==
        hex("00000003 00000000 00000000 00002710"));
  CHECK(vx::encode_link(3) == hex("00000003"));

  // Round trips, and term_char above 0x7F in both spellings.
  vx::device_read_parms rp;
  REQUIRE(vx::decode(vx::encode(vx::device_read_parms{3, 7, 8, 9, 0x80, '\xff'}), rp));
  CHECK(rp.term_char == '\xff');
  REQUIRE(vx::decode(hex("00000003 00000007 00000008 00000009 00000080 000000ff"), rp));
  CHECK(rp.term_char == '\xff');
  CHECK(!vx::decode(hex("00000003 00000007 00000008 00000009 00000080 00000100"), rp));
  vx::create_link_parms cp;
  const std::string cl = vx::encode(vx::create_link_parms{5, false, 0, "gpib0,22"});
  REQUIRE(vx::decode(cl, cp));
  CHECK(cp.device == "gpib0,22");
  CHECK(!vx::decode(cl, cp, 4));
  vx::device_write_parms wp;
  auto w = vx::encode(vx::device_write_parms{3, 1, 2, vx::kFlagEnd, std::string_view("a\0b", 3)});
  REQUIRE(vx::decode(w, wp, 100));
  CHECK(wp.data == std::string_view("a\0b", 3));
  CHECK(wp.flags == vx::kFlagEnd);
  for (std::size_t n = 0; n < w.size(); ++n) CHECK(!vx::decode(w.substr(0, n), wp, 100));
}

TEST_CASE("vxi11 results: golden bytes, round trips, malformed") {
  CHECK(vx::encode(vx::create_link_resp{0, 3, 0, 4096}) ==
        hex("00000000 00000003 00000000 00001000"));
  CHECK(vx::encode(vx::device_read_resp{0, vx::kReasonEnd, std::string_view("1\n\0", 3)}) ==
        hex("00000000 00000004 00000003 310a00 00"));
  CHECK(vx::encode(vx::device_readstb_resp{0, 0x50}) == hex("00000000 00000050"));

  vx::create_link_resp cl;
  REQUIRE(vx::decode(hex("00000000 00000003 0000ffff 00000400"), cl));
  CHECK(cl.abort_port == 0xFFFFu);
  CHECK(cl.max_recv_size == 1024u);
  CHECK(!vx::decode(hex("00000000 00000003 00010000 00000400"), cl));  // port > 65535
  vx::device_read_resp rr;
  auto rd = vx::encode(vx::device_read_resp{0, vx::kReasonEnd, "#15ab\n\0\n"});
  REQUIRE(vx::decode(rd, rr, 100));
  CHECK(rr.reason == vx::kReasonEnd);
  CHECK(!vx::decode(rd, rr, 3));  // more data than requested
  for (std::size_t n = 0; n < rd.size(); ++n) CHECK(!vx::decode(rd.substr(0, n), rr, 100));
  vx::device_readstb_resp sr;
  CHECK(!vx::decode(hex("00000000 00000100"), sr));
  vx::device_write_resp wr;
  REQUIRE(vx::decode(hex("00000000 00000005"), wr));
  CHECK(wr.size == 5u);
}

TEST_CASE("vxi11 errors read as the spec's words") {
  CHECK(vx::device_error(11).message().find("locked by another link") != std::string::npos);
  CHECK(vx::device_error(15).message().find("I/O timeout") != std::string::npos);
  CHECK(vx::device_error(99).message().find("unknown") != std::string::npos);
  CHECK(vx::device_error(-1).message().find("unknown") != std::string::npos);
  CHECK(make_error_code(vx::errc::portmapper_unreachable).message().find("portmapper") !=
        std::string::npos);
  CHECK(vx::device_error(4) == vx::errc::invalid_link_identifier);
}
