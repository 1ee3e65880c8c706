# herald_add_part(NAME SOURCES src... [PUBLIC deps...] [PRIVATE deps...])
#
# Defines one part of herald: the library herald_NAME with the alias
# herald::NAME, its public headers in include/, the warnings target linked
# privately, and its installation into the exported package.
function(herald_add_part name)
  cmake_parse_arguments(PART "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  add_library(herald_${name} ${PART_SOURCES})
  add_library(herald::${name} ALIAS herald_${name})
  set_target_properties(herald_${name} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(herald_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(herald_${name}
    PUBLIC ${PART_PUBLIC}
    PRIVATE ${PART_PRIVATE} herald_warnings)
  install(TARGETS herald_${name} EXPORT heraldTargets)
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()
