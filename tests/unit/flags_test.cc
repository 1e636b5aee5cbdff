// The command-line flag parser (runtime/cli/flags.h): both value forms, booleans, what was seen,
// and the errors every malformed flag must give (the CLI tests check them through `chai`; here
// each rule on its own).
#include "runtime/cli/flags.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace chai {
namespace {

struct Parsed {
  std::string name = "default";
  int count = 7;
  int64_t big = 0;
  float rate = 0.5f;
  bool verbose = false;
  int positions = 0;  // PositiveInt: 0 is "unset"
  float gib = 0;      // PositiveFloat
};

absl::Status Parse(const std::vector<std::string>& args, Parsed* p, FlagParser* parser) {
  parser->String("name", &p->name, "a name");
  parser->Int("count", &p->count, "a count");
  parser->Int64("big", &p->big, "a large integer");
  parser->Float("rate", &p->rate, "a rate");
  parser->Bool("verbose", &p->verbose, "say more");
  parser->PositiveInt("positions", &p->positions, "positions");
  parser->PositiveFloat("gib", &p->gib, "GiB");
  return parser->Parse(args);
}

TEST(FlagParser, BothValueFormsAndBooleans) {
  Parsed p;
  FlagParser parser;
  ASSERT_TRUE(Parse({"--name", "opt", "--count=3", "--big", "8589934592", "--rate=0.25", "--verbose",
                     "--positions", "2048", "--gib=1.5"},
                    &p, &parser)
                  .ok());
  EXPECT_EQ(p.name, "opt");
  EXPECT_EQ(p.count, 3);
  EXPECT_EQ(p.big, int64_t{8589934592});
  EXPECT_FLOAT_EQ(p.rate, 0.25f);
  EXPECT_TRUE(p.verbose);
  EXPECT_EQ(p.positions, 2048);
  EXPECT_FLOAT_EQ(p.gib, 1.5f);
  EXPECT_TRUE(parser.Seen("count"));
  EXPECT_TRUE(parser.Seen("positions"));
}

TEST(FlagParser, UnsetFlagsKeepTheirDefaultsAndAreNotSeen) {
  Parsed p;
  FlagParser parser;
  ASSERT_TRUE(Parse({}, &p, &parser).ok());
  EXPECT_EQ(p.name, "default");
  EXPECT_EQ(p.count, 7);
  EXPECT_EQ(p.positions, 0);
  EXPECT_FALSE(parser.Seen("count"));
  EXPECT_FALSE(parser.Seen("positions"));
}

// Each malformed input: an error whose message names the flag and the problem.
TEST(FlagParser, Errors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--bogus", "1"}, "unknown flag --bogus"},
      {{"count", "3"}, "unexpected argument 'count'"},
      {{"--count"}, "--count needs a value"},
      {{"--verbose=yes"}, "--verbose takes no value"},
      {{"--count", "ten"}, "--count expects an integer, got 'ten'"},
      {{"--count", "99999999999"}, "--count expects an integer"},
      {{"--big", "1e3"}, "--big expects an integer"},
      {{"--rate", "fast"}, "--rate expects a number, got 'fast'"},
      {{"--rate", "inf"}, "--rate expects a number"},
      {{"--positions", "0"}, "--positions must be positive, got '0'"},
      {{"--positions=-8"}, "--positions must be positive, got '-8'"},
      {{"--positions", "x"}, "--positions expects an integer, got 'x'"},
      {{"--gib", "0"}, "--gib must be positive, got '0'"},
      {{"--gib", "-0.5"}, "--gib must be positive, got '-0.5'"},
  };
  for (const auto& [args, needle] : cases) {
    Parsed p;
    FlagParser parser;
    const absl::Status s = Parse(args, &p, &parser);
    ASSERT_FALSE(s.ok()) << args[0];
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << s.message() << " / wanted: " << needle;
  }
}

}  // namespace
}  // namespace chai
