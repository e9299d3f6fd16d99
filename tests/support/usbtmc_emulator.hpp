#pragma once
// An emulated USBTMC/USB488 instrument behind the real libusb, through umockdev's ioctl handler
// (../shared/reference/usbtmc-testing.md). The test process must run with
// LD_PRELOAD=libumockdev-preload.so.0 (after libasan/libtsan in sanitizer builds); the emulator
// must be constructed before the code under test calls libusb_init.
//
// The device answers usbfs ioctls (SUBMITURB/REAPURB/DISCARDURB, CLAIM, CLEAR_HALT, ...) in
// umockdev's worker thread with its own packet model: a Bulk-IN URB completes when full or on a
// short packet (a transfer of whole packets is followed by a ZLP unless the Rigol fault is on).
// Knobs and counters may be used from any thread.
//
// Instrument: "*IDN?" -> idn; "ECHO? text" -> text; "LEN? n" -> n bytes ("AAA...\n");
// "BLOCK? n" -> "#<d><n><n bytes incl. LF and NUL>\n"; "*STB?" -> the status byte;
// "STB n" sets it; any other query -> "0"; other commands are recorded only.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace semilab::test {

class usbtmc_emulator {
 public:
  struct options {
    std::uint16_t vendor_id = 0x0957;
    std::uint16_t product_id = 0x1796;
    std::string serial = "MY12345678";
    std::uint16_t max_packet = 512;  // bulk endpoints; 64 = full speed (Rigol, Siglent)
    bool interrupt_in = true;        // USB488 Interrupt-IN endpoint 0x83
    std::string idn = "SEMILAB,USBTMC-EMU,MY12345678,1.0";
  };

  enum class fault {
    wrong_tag,  // the next reply's header carries another bTag
    stall,      // the next REQUEST_DEV_DEP_MSG_IN stalls Bulk-IN (until CLEAR_HALT)
    siglent,    // header TransferSize = first packet only, EOM clear, 4 bytes in a short packet
    rigol,      // no ZLP after a transfer of whole packets
    hang,       // the next REQUEST gets no data; the reply stays queued (late) until abort/clear
  };

  struct counters {
    int initiate_abort_in = 0;
    int check_abort_in = 0;
    int initiate_abort_out = 0;
    int initiate_clear = 0;
    int check_clear = 0;
    int clear_halt_in = 0;
    int clear_halt_out = 0;
    int read_status_byte = 0;
    int get_capabilities = 0;
    int detach_claims = 0;  // USBDEVFS_DISCONNECT_CLAIM (auto-detach of a kernel driver)
    int requests = 0;       // REQUEST_DEV_DEP_MSG_IN
    int zlps = 0;           // zero-length packets sent
    int discarded = 0;      // URBs cancelled by the host
    std::vector<std::uint8_t> abort_in_tags;
    std::vector<std::uint8_t> out_tags;  // bTag of every Bulk-OUT header
  };

  explicit usbtmc_emulator(options opt);
  usbtmc_emulator() : usbtmc_emulator(options{}) {}
  ~usbtmc_emulator();
  usbtmc_emulator(const usbtmc_emulator&) = delete;
  usbtmc_emulator& operator=(const usbtmc_emulator&) = delete;

  // True when the umockdev preload library is loaded (else the tests cannot run).
  static bool available();

  void inject(fault f, int times = 1);
  void set_status_byte(std::uint8_t stb);

  [[nodiscard]] counters stats() const;
  [[nodiscard]] std::vector<std::string> commands() const;  // complete messages received
  [[nodiscard]] int device_number() const;                  // changes with each replug

  // Unplug: URBs in flight end with -ESHUTDOWN, later ioctls fail with ENODEV, a "remove"
  // uevent is sent. Replug: the device comes back at the next device number (fresh state).
  void unplug();
  void replug();

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace semilab::test
