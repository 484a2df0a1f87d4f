# Every third-party dependency is a Debian package; see README.md for the apt-get line.
find_package(fmt REQUIRED)
find_package(Torch REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SimGrid REQUIRED IMPORTED_TARGET simgrid>=3.32)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
# cpp-httplib (libcpp-httplib-dev) ships only a pkg-config file: the HTTP server of `bouquet api`.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(GTest REQUIRED)
find_package(Threads REQUIRED)

# OpenDHT's shipped config names targets it does not create itself (see ../shared/NOTES.md).
pkg_check_modules(Jsoncpp REQUIRED IMPORTED_TARGET jsoncpp)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl)
find_package(msgpack REQUIRED CONFIG PATHS /usr/lib/x86_64-linux-gnu/cmake/msgpackc-cxx NO_DEFAULT_PATH)
find_package(opendht 2.4 REQUIRED)

# Asio is header-only; Debian ships it standalone.
add_library(bouquet_asio INTERFACE)
target_compile_definitions(bouquet_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
target_link_libraries(bouquet_asio INTERFACE Threads::Threads)

