// USBTMC wire format (drivers/src/usbtmc_proto.hpp): headers, bTags, and reply assembly against
// a packet model of the device side (a read ends when full or on a short packet, as in USB).
#include <doctest/doctest.h>

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "usbtmc_proto.hpp"

using namespace semilab::drivers;
using namespace semilab::drivers::usbtmc;

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

std::span<const std::uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string in_header(std::uint8_t tag, std::uint32_t size, bool eom) {
  std::string h(12, '\0');
  h[0] = 2;
  h[1] = static_cast<char>(tag);
  h[2] = static_cast<char>(~tag);
  for (int i = 0; i < 4; ++i)
    h[4 + static_cast<std::size_t>(i)] = static_cast<char>(size >> (8 * i));
  h[8] = eom ? 1 : 0;
  return h;
}

// The device's Bulk-IN packet stream.
struct packet_pipe {
  std::size_t mps;
  std::deque<std::string> packets;
  bool blocked = false;  // a read found no packet to end it: on hardware it would hang

  // Splits a transfer into packets; whole packets get a ZLP unless `zlp` is false.
  void transfer(const std::string& t, bool zlp = true) {
    for (std::size_t off = 0; off < t.size(); off += mps) packets.push_back(t.substr(off, mps));
    if (t.size() % mps == 0 && zlp) packets.emplace_back();
  }
  std::string read(std::size_t len) {
    std::string out;
    while (true) {
      if (packets.empty()) {
        blocked = true;
        return out;
      }
      std::string p = packets.front();
      packets.pop_front();
      REQUIRE(out.size() + p.size() <= len);
      out += p;
      if (p.size() < mps || out.size() == len) return out;
    }
  }
};

// Runs a reader to the end. `device(tag, max)` queues what the device sends for each request.
reply_reader::step run(reply_reader& r, packet_pipe& pipe,
                       const std::function<void(std::uint8_t, std::uint32_t)>& device,
                       btag_counter& tags) {
  for (int guard = 0; guard < 100; ++guard) {
    switch (r.state()) {
      case reply_reader::step::request: {
        std::uint8_t tag = tags.next();
        device(tag, r.begin_transfer(tag));
        break;
      }
      case reply_reader::step::read: {
        std::string got = pipe.read(r.read_size());
        REQUIRE_FALSE(pipe.blocked);
        r.feed(span_of(got));
        break;
      }
      default:
        return r.state();
    }
  }
  FAIL("reader did not finish");
  return r.state();
}

}  // namespace

TEST_CASE("DEV_DEP_MSG_OUT: header, payload, padding to 4") {
  auto w = encode_dev_dep_msg_out(1, "*IDN?\n", true);
  CHECK(w == bytes({1, 1, 0xFE, 0, 6, 0, 0, 0, 1, 0, 0, 0}) + "*IDN?\n" + bytes({0, 0}));
  CHECK(w.size() % 4 == 0);
  auto w2 = encode_dev_dep_msg_out(7, "ABCD", false);
  CHECK(w2.size() == 16);
  CHECK(w2[8] == 0);  // no EOM
  CHECK(static_cast<std::uint8_t>(w2[2]) == static_cast<std::uint8_t>(~7));
  CHECK(encode_dev_dep_msg_out(3, "", true).size() == 12);
}

TEST_CASE("REQUEST_DEV_DEP_MSG_IN: TransferSize and TermChar") {
  auto r = encode_request_dev_dep_msg_in(2, 1024);
  CHECK(std::string(r.begin(), r.end()) == bytes({2, 2, 0xFD, 0, 0, 4, 0, 0, 0, 0, 0, 0}));
  auto t = encode_request_dev_dep_msg_in(255, 0x01020304, '\n');
  CHECK(std::string(t.begin(), t.end()) == bytes({2, 255, 0, 0, 4, 3, 2, 1, 2, '\n', 0, 0}));
  auto trig = encode_trigger(9);
  CHECK(trig[0] == 128);
  CHECK(trig[2] == static_cast<std::uint8_t>(~9));
}

TEST_CASE("bTag: 1..255, never 0, wraps to 1; READ_STATUS_BYTE tags 2..127") {
  btag_counter c;
  for (int i = 1; i <= 255; ++i) CHECK(c.next() == i);
  CHECK(c.next() == 1);
  for (int i = 0; i < 1000; ++i) CHECK(c.next() != 0);
  stb_tag_counter s;
  CHECK(s.next() == 2);
  for (int i = 3; i <= 127; ++i) CHECK(s.next() == i);
  CHECK(s.next() == 2);
}

TEST_CASE("Bulk-IN header validation") {
  bulk_in_header h;
  std::string ok = in_header(5, 48, true);
  CHECK(parse_bulk_in_header(span_of(ok), 5, h) == header_status::ok);
  CHECK(h.transfer_size == 48);
  CHECK(h.eom);
  CHECK(parse_bulk_in_header(span_of(ok), 6, h) == header_status::wrong_tag);
  CHECK(parse_bulk_in_header(span_of(ok.substr(0, 11)), 5, h) == header_status::too_short);
  std::string inv = ok;
  inv[2] = 0;
  CHECK(parse_bulk_in_header(span_of(inv), 5, h) == header_status::bad_tag_inverse);
  std::string id = ok;
  id[0] = 1;
  CHECK(parse_bulk_in_header(span_of(id), 5, h) == header_status::bad_msg_id);
  CHECK(parse_bulk_in_header({}, 5, h) == header_status::too_short);
}

TEST_CASE("GET_CAPABILITIES reply") {
  std::string c(0x18, '\0');
  c[0] = 1;
  c[3] = 1;
  c[5] = 1;
  c[14] = 0x07;
  c[15] = 0x08;
  auto caps = parse_capabilities(span_of(c));
  REQUIRE(caps.has_value());
  CHECK(caps->bcd_usbtmc == 0x0100);
  CHECK(caps->term_char);
  CHECK(caps->usb488);
  CHECK(caps->scpi);
  CHECK_FALSE(parse_capabilities(span_of(c.substr(0, 5))).has_value());
}

TEST_CASE("reply_reader: one short transfer, padding dropped") {
  packet_pipe pipe{512};
  btag_counter tags;
  reply_reader r(512, 1 << 20);
  auto st = run(
      r, pipe,
      [&](std::uint8_t tag, std::uint32_t) {
        pipe.transfer(in_header(tag, 6, true) + "1.234\n" + bytes({0, 0}));
      },
      tags);
  CHECK(st == reply_reader::step::complete);
  CHECK(r.message() == "1.234\n");
  CHECK(r.read_size() == 512);
}

TEST_CASE("reply_reader: binary block with LF and NUL across packets, several transfers") {
  std::string payload = "#3300";
  for (int i = 0; i < 300; ++i) payload += static_cast<char>(i % 2 ? '\n' : '\0');
  payload += "\n";
  packet_pipe pipe{64};
  btag_counter tags;
  reply_reader r(64, 1 << 20);
  std::size_t off = 0;
  auto st = run(
      r, pipe,
      [&](std::uint8_t tag, std::uint32_t) {
        std::size_t n =
            std::min<std::size_t>(100, payload.size() - off);  // the device sends 100 per transfer
        std::string t = in_header(tag, static_cast<std::uint32_t>(n), off + n == payload.size()) +
                        payload.substr(off, n);
        t.append(alignment_padding(t.size()), '\0');
        off += n;
        pipe.transfer(t);
      },
      tags);
  CHECK(st == reply_reader::step::complete);
  CHECK(r.message() == payload);
  CHECK(r.transfers() == 4);
}

TEST_CASE("reply_reader: exact multiple of wMaxPacketSize, with a ZLP (spec) or without (Rigol)") {
  // 12 + 52 = 64: one full packet.
  std::string idn = std::string(51, 'R') + "\n";
  for (bool zlp : {true, false}) {
    CAPTURE(zlp);
    packet_pipe pipe{64};
    btag_counter tags;
    reply_reader r(64, 1 << 20);
    auto st = run(
        r, pipe,
        [&](std::uint8_t tag, std::uint32_t) {
          pipe.transfer(in_header(tag, 52, true) + idn, zlp);
        },
        tags);
    CHECK(st == reply_reader::step::complete);
    CHECK(r.message() == idn);
    // The ZLP, if any, is still in the pipe: the next reply's reader skips it.
    CHECK(pipe.packets.size() == (zlp ? 1u : 0u));
    reply_reader next(64, 1 << 20);
    auto st2 = run(
        next, pipe,
        [&](std::uint8_t tag, std::uint32_t) {
          pipe.transfer(in_header(tag, 2, true) + "1\n" + bytes({0, 0}));
        },
        tags);
    CHECK(st2 == reply_reader::step::complete);
    CHECK(next.message() == "1\n");
    CHECK(next.zlps_skipped() == (zlp ? 1u : 0u));
  }
  // Two packets exactly (12 + 116 = 128), Rigol style.
  packet_pipe pipe{64};
  btag_counter tags;
  reply_reader r(64, 1 << 20);
  std::string big = std::string(115, 'x') + "\n";
  CHECK(run(
            r, pipe,
            [&](std::uint8_t tag, std::uint32_t) {
              pipe.transfer(in_header(tag, 116, true) + big, false);
            },
            tags) == reply_reader::step::complete);
  CHECK(r.message() == big);
}

TEST_CASE("reply_reader: the Siglent SDG1062X *IDN? byte sequence") {
  // pyvisa-py PR 465: the first transfer declares 52 bytes (what fits into a 64-byte packet),
  // EOM clear, and sends 4 more in a header-less short packet; the second transfer declares 6,
  // sends "8\n" and zeros.
  const std::string first = "Siglent Technologies,SDG1062X,SDG1XDDC801438,1.01.01";
  REQUIRE(first.size() == 52);
  packet_pipe pipe{64};
  btag_counter tags;
  tags.next();  // the *IDN? write used bTag 1
  reply_reader r(64, 1 << 20);
  int request = 0;
  auto st = run(
      r, pipe,
      [&](std::uint8_t tag, std::uint32_t) {
        if (request++ == 0) {
          CHECK(tag == 2);
          pipe.packets.push_back(bytes({0x02, 0x02, 0xfd, 0x00, 0x34, 0, 0, 0, 0, 0, 0, 0}) +
                                 first);
          pipe.packets.push_back(".33R");
        } else {
          CHECK(tag == 3);
          pipe.packets.push_back(bytes({0x02, 0x03, 0xfc, 0x00, 0x06, 0, 0, 0, 0x01, 0, 0, 0}) +
                                 "8\n" + bytes({0, 0, 0, 0, 0, 0}));
        }
      },
      tags);
  CHECK(st == reply_reader::step::complete);
  CHECK(r.message() == first + ".33R8\n");
  CHECK(r.surplus_bytes() == 4);
}

TEST_CASE("reply_reader: Siglent-style undercount inside one read") {
  // The header declares 8 but 20 payload bytes arrive before the short packet.
  packet_pipe pipe{512};
  btag_counter tags;
  reply_reader r(512, 1 << 20);
  std::string text = "0123456789abcdefghi\n";
  auto st = run(
      r, pipe,
      [&](std::uint8_t tag, std::uint32_t) { pipe.transfer(in_header(tag, 8, true) + text); },
      tags);
  CHECK(st == reply_reader::step::complete);
  CHECK(r.message() == text);
}

TEST_CASE("reply_reader: EOM is ignored when the transfer is shorter than declared") {
  packet_pipe pipe{64};
  btag_counter tags;
  reply_reader r(64, 1 << 20);
  int n = 0;
  auto st = run(
      r, pipe,
      [&](std::uint8_t tag, std::uint32_t) {
        if (n++ == 0) {
          pipe.transfer(in_header(tag, 10, true) + "abcd");  // says 10, sends 4
        } else {
          pipe.transfer(in_header(tag, 2, true) + "e\n" + bytes({0, 0}));
        }
      },
      tags);
  CHECK(st == reply_reader::step::complete);
  CHECK(r.message() == "abcde\n");
}

TEST_CASE("reply_reader: malformed and hostile input fails with a value") {
  btag_counter tags;
  SUBCASE("another request's bTag: stale reply") {
    packet_pipe pipe{64};
    reply_reader r(64, 1 << 20);
    CHECK(run(
              r, pipe,
              [&](std::uint8_t tag, std::uint32_t) {
                pipe.transfer(in_header(static_cast<std::uint8_t>(tag + 1), 2, true) + "1\n" +
                              bytes({0, 0}));
              },
              tags) == reply_reader::step::failed);
    CHECK(r.error() == errc::stray_data);
  }
  SUBCASE("not a header") {
    packet_pipe pipe{64};
    reply_reader r(64, 1 << 20);
    CHECK(run(
              r, pipe, [&](std::uint8_t, std::uint32_t) { pipe.transfer("garbage, not USBTMC"); },
              tags) == reply_reader::step::failed);
    CHECK(r.error() == errc::bad_reply);
  }
  SUBCASE("TransferSize beyond what was requested") {
    packet_pipe pipe{64};
    reply_reader r(64, 100);
    CHECK(run(
              r, pipe,
              [&](std::uint8_t tag, std::uint32_t max) {
                pipe.transfer(in_header(tag, max + 1000, true) + "x");
              },
              tags) == reply_reader::step::failed);
    CHECK(r.error() == errc::bad_reply);
  }
  SUBCASE("reply longer than the limit") {
    packet_pipe pipe{64};
    reply_reader r(64, 100);
    CHECK(run(
              r, pipe,
              [&](std::uint8_t tag, std::uint32_t max) {
                std::string t = in_header(tag, max, false) + std::string(max, 'y');
                t.append(alignment_padding(t.size()), '\0');
                pipe.transfer(t);
              },
              tags) == reply_reader::step::failed);
    CHECK(r.error() == errc::reply_too_long);
  }
  SUBCASE("endless zero-length packets") {
    packet_pipe pipe{64};
    reply_reader r(64, 100);
    CHECK(run(
              r, pipe,
              [&](std::uint8_t, std::uint32_t) {
                for (int i = 0; i < 20; ++i) pipe.packets.emplace_back();
              },
              tags) == reply_reader::step::failed);
    CHECK(r.error() == errc::bad_reply);
  }
  SUBCASE("more bytes than asked for") {
    reply_reader r(64, 100);
    r.begin_transfer(1);
    std::string big(200, 'z');
    CHECK(r.feed(span_of(big)) == reply_reader::step::failed);
  }
}

TEST_CASE("reply_reader: 8-byte packets (full-speed bulk): the header spans two packets") {
  packet_pipe pipe{8};
  btag_counter tags;
  reply_reader r(8, 1 << 20);
  CHECK(r.read_size() == 16);
  std::string text = "0123456789ABCDEFGHIJ\n";
  auto st = run(
      r, pipe,
      [&](std::uint8_t tag, std::uint32_t) {
        std::string t = in_header(tag, static_cast<std::uint32_t>(text.size()), true) + text;
        t.append(alignment_padding(t.size()), '\0');
        pipe.transfer(t);
      },
      tags);
  CHECK(st == reply_reader::step::complete);
  CHECK(r.message() == text);
}
