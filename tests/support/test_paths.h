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

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_TEST_PATHS_H_
