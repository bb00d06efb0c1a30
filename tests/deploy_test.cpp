#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/support/support.hpp"

namespace {

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// The packages of scripts/setup's "# build" group.
std::set<std::string> setup_build_packages() {
  std::istringstream in(read(pitstop::test::source_dir() / "scripts/setup"));
  std::set<std::string> out;
  std::string line;
  bool in_group = false;
  while (std::getline(in, line)) {
    auto trimmed = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    if (trimmed.rfind("# build", 0) == 0) {
      in_group = true;
      continue;
    }
    if (!in_group) continue;
    if (trimmed.empty() || trimmed[0] == '#' || trimmed[0] == ')') break;
    for (auto& w : words(trimmed)) out.insert(w);
  }
  return out;
}

// The packages after the marker in docker/Dockerfile, up to the end of that RUN instruction.
std::set<std::string> dockerfile_build_packages() {
  std::istringstream in(read(pitstop::test::source_dir() / "docker/Dockerfile"));
  std::set<std::string> out;
  std::string line;
  bool after_marker = false;
  const std::regex package("^[a-z0-9][a-z0-9.+-]+$");
  while (std::getline(in, line)) {
    if (line.find("# packages: build") != std::string::npos) {
      after_marker = true;
      continue;
    }
    if (!after_marker) continue;
    const bool continues = !line.empty() && line.back() == '\\';
    for (auto& w : words(line)) {
      if (std::regex_match(w, package) && w != "apt-get" && w != "update" && w != "install" && w != "run")
        out.insert(w);
    }
    if (!continues) break;
  }
  return out;
}

}  // namespace

TEST(Deploy, DockerfileBuildsWithTheSamePackagesAsSetup) {
  auto setup = setup_build_packages();
  auto docker = dockerfile_build_packages();
  EXPECT_GE(setup.size(), 10u);
  EXPECT_EQ(setup, docker);
  EXPECT_TRUE(setup.count("libboost1.81-dev"));
}

TEST(Deploy, DockerfileRunsAsNonRootWithAHealthcheck) {
  auto text = read(pitstop::test::source_dir() / "docker/Dockerfile");
  EXPECT_NE(text.find("FROM debian:12"), std::string::npos);
  EXPECT_NE(text.find("HEALTHCHECK"), std::string::npos);
  EXPECT_NE(text.find("/healthz"), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("\\nUSER ([^\\n]+)")));
  EXPECT_NE(m[1].str().substr(0, 2), "0:");
  EXPECT_NE(m[1].str(), "root");
}

TEST(Deploy, ComposeFileIsValid) {
  const auto compose = (pitstop::test::source_dir() / "docker/compose.yaml").string();
  pitstop::test::Process p({"docker-compose", "-f", compose, "config"});
  auto status = p.wait(std::chrono::seconds(60));
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << p.log();
  auto out = p.log();
  for (const char* service : {"pitstop:", "redis-cache:", "redis-queue:", "mariadb:"})
    EXPECT_NE(out.find(service), std::string::npos) << service;
  EXPECT_NE(out.find("PITSTOP_MARIADB_PRIMARY"), std::string::npos);
  EXPECT_NE(out.find("redis-cache.conf"), std::string::npos);
  for (const char* f : {"schema.sql", "indexes.sql", "outbox.sql", "triggers.sql"}) EXPECT_NE(out.find(f), std::string::npos) << f;
}
