// Paths the tests read: the repository's committed fixtures and the optional ../shared folder.
#ifndef CHAI_TESTS_SUPPORT_TEST_PATHS_H_
#define CHAI_TESTS_SUPPORT_TEST_PATHS_H_

#include <string>

namespace chai::testing {

std::string SourceDir();                               // repository root
std::string FixtureDir(const std::string& name);       // tests/fixtures/<name>
std::string SharedDir();                               // ../shared next to the repository
bool SharedAvailable();                                // ../shared exists (tests skip otherwise)
std::string ChaiBinary();                              // the built `chai` executable

// A fixture name as a GoogleTest parameter name ("opt-preln" -> "opt_preln"): pass as the
// name generator of INSTANTIATE_TEST_SUITE_P over fixture names.
struct FixtureParamName {
  template <typename Info>
  std::string operator()(const Info& info) const {
    std::string n = info.param;
    for (char& c : n) c = c == '-' ? '_' : c;
    return n;
  }
};

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_TEST_PATHS_H_
