# Debian's bare-metal RISC-V GCC (gcc-riscv64-unknown-elf) with picolibc, for the ESP32-C3.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv32)
if(DEFINED ENV{RISCV_CC})
  set(CMAKE_C_COMPILER $ENV{RISCV_CC})
else()
  set(CMAKE_C_COMPILER riscv64-unknown-elf-gcc)
endif()
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
