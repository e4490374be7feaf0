# llamagen: writes llama2.c checkpoints with random weights for speed work
# (the generator itself is frontends/Llama2cGenerate.cpp).

add_executable(llamagen llamagen.cpp)
target_compile_options(llamagen PRIVATE ${LLAMAC_WARNINGS})
target_link_libraries(llamagen PRIVATE llamac_frontends)
