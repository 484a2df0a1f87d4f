# Every third-party dependency is a Debian package; see README.md for the apt-get line.
find_package(fmt REQUIRED)
find_package(Torch REQUIRED)
# Debian's libtorch 1.13 is CPU-only; PyPI's torch wheels (BOUQUET_TORCH=pip scripts/setup.sh) carry
# a libtorch 2.x with CUDA. Code that needs CUDA's own headers (free GPU memory, streams) is
# compiled only where BOUQUET_HAS_CUDA is defined; the rest asks torch::cuda at run time.
if(TORCH_CUDA_LIBRARIES)
  set_property(TARGET torch APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS BOUQUET_HAS_CUDA)
  message(STATUS "bouquet: libtorch ${Torch_VERSION} with CUDA ${CUDAToolkit_VERSION}")
else()
  message(STATUS "bouquet: libtorch ${Torch_VERSION}, CPU only")
endif()
# PyPI's libtorch ships its own fmt headers (12.x) on its include path, ahead of the system's:
# code built against them would not link with the system's libfmt. A folder holding only the
# system's fmt, searched first, keeps every file on the fmt it links. (Debian's libtorch lives in
# /usr, where its fmt is the system's.)
get_target_property(fmt_includes fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
find_path(system_fmt_dir fmt/format.h PATHS ${fmt_includes} /usr/include NO_DEFAULT_PATH REQUIRED)
get_filename_component(torch_fmt_parent "${TORCH_INSTALL_PREFIX}/include" REALPATH)
get_filename_component(system_fmt_parent "${system_fmt_dir}" REALPATH)
if(EXISTS "${torch_fmt_parent}/fmt" AND NOT torch_fmt_parent STREQUAL system_fmt_parent)
  file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/system-fmt")
  file(CREATE_LINK "${system_fmt_dir}/fmt" "${CMAKE_BINARY_DIR}/system-fmt/fmt" SYMBOLIC)
  include_directories(BEFORE "${CMAKE_BINARY_DIR}/system-fmt")
  # PyPI's libtorch.so also exports its own build of std::filesystem (64 symbols, from an older
  # libstdc++): listed before libstdc++.so, it wins the lookup and std::filesystem::remove_all
  # jumps to a null pointer. libstdc++ named first keeps every binary on the system's.
  add_link_options("LINKER:--push-state,--no-as-needed" "-lstdc++" "LINKER:--pop-state")
endif()
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

