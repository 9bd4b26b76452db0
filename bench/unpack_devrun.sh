# Sourced on the GPU machine: unpacks the xz-compressed binaries carried in .devrun (built on the dev machine).
for f in .devrun/*.xz; do
  python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" "$f"
done
chmod +x .devrun/* 2>/dev/null
export PARADIT_FIXTURES_DIR="$PWD/tests/fixtures"
