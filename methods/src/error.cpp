#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>
#include <semilab/methods/error.hpp>

namespace semilab::methods {
namespace {
class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "semilab.methods"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok:
        return "ok";
      case errc::insufficient_data:
        return "insufficient data";
      case errc::flagged_in_window:
        return "flagged point inside the fit window";
      case errc::non_monotonic:
        return "sweep not monotonic";
      case errc::bad_input:
        return "bad input";
      case errc::no_crossing:
        return "curve does not reach the interpolation level";
      case errc::no_convergence:
        return "solver did not converge";
      case errc::degenerate_fit:
        return "degenerate least-squares fit";
      case errc::bad_recipe:
        return "bad recipe";
    }
    return "unknown methods error";
  }
};
}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category c;
  return c;
}

void throw_exception_from_error(const error& e, const boost::source_location& loc) {
  boost::throw_exception(boost::system::system_error(e.code, e.message), loc);
}

}  // namespace semilab::methods
