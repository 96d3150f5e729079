# Bulkhead's bundled plugins. Under the Python plugin host, the package "plugins" spans every
# plugins/ folder on BULKHEAD_SEARCH_PATH (train.json's folder, the working directory) and then
# this one, so EveryDream2 class paths like plugins.example_plugin.ExampleLoggingPlugin resolve.
