/**
 * The public LLM-serving traces `joulestream traces fetch NAME` downloads, with where each file is
 * published and, where it could be established, its sha256.
 *
 * Checksums: the Azure 2023 and Mooncake files are byte-for-byte the copies the repository was
 * built against (load/traces carries Azure 2023 whole), so their sha256 are those of the published
 * files. BurstGPT's files are Git LFS objects: the LFS pointer of each names its sha256 and size,
 * and the media URL pinned to that pointer's commit serves exactly that object. GitHub URLs are
 * pinned to a commit for the same reason: a published file that changes later would otherwise read
 * as a corrupt download. The Azure 2024 files (Azure blob storage) could not be checked when this
 * was written: their checksum is recorded on first download (trust on first use) and every later
 * fetch is held to it.
 */
export interface TraceFile {
  /** The file's name in the cache (DIR/NAME/FILE), as published. */
  name: string;
  url: string;
  /** Lower-case hex; absent: recorded on first download. */
  sha256?: string;
  bytes?: number;
}

export interface TraceDataset {
  name: string;
  title: string;
  /** Format for `joulestream load --trace` (detected from the file as well). */
  format: "azure" | "mooncake" | "burstgpt";
  licence: string;
  /** What the dataset asks users to cite, and where it is described. */
  source: string;
  files: TraceFile[];
}

const AZURE_2023_COMMIT = "790921015d50dd6aae7f7e47f39ba0e235ad6b08";
const azure2023 = (file: string) => `https://raw.githubusercontent.com/Azure/AzurePublicDataset/${AZURE_2023_COMMIT}/data/${file}`;
const AZURE_2024_BLOB = "https://azurepublicdatasettraces.blob.core.windows.net/azurellminfererencetrace";
const mooncake = (commit: string, file: string) => `https://raw.githubusercontent.com/kvcache-ai/Mooncake/${commit}/FAST25-release/traces/${file}`;
const burstGpt = (commit: string, file: string) => `https://media.githubusercontent.com/media/HPMLL/BurstGPT/${commit}/data/${file}`;
const BURSTGPT_V1 = "5d93d820d9b6bee4e26914df003e5713538164ae";

export const TRACE_CATALOG: readonly TraceDataset[] = [
  {
    name: "azure-2023",
    title: "Azure LLM inference trace 2023: one hour of code and conversation requests (Splitwise)",
    format: "azure",
    licence: "CC-BY-4.0",
    source: "Patel et al., Splitwise, ISCA 2024; github.com/Azure/AzurePublicDataset (AzureLLMInferenceDataset2023.md)",
    files: [
      { name: "AzureLLMInferenceTrace_code.csv", url: azure2023("AzureLLMInferenceTrace_code.csv"), sha256: "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6", bytes: 320_117 },
      { name: "AzureLLMInferenceTrace_conv.csv", url: azure2023("AzureLLMInferenceTrace_conv.csv"), sha256: "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8", bytes: 719_188 },
    ],
  },
  {
    name: "azure-2024",
    title: "Azure LLM inference trace 2024: one week of code and conversation requests (DynamoLLM)",
    format: "azure",
    licence: "CC-BY-4.0",
    source: "Stojkovic et al., DynamoLLM, HPCA 2025; github.com/Azure/AzurePublicDataset (AzureLLMInferenceDataset2024.md)",
    files: [
      { name: "AzureLLMInferenceTrace_code_1week.csv", url: `${AZURE_2024_BLOB}/AzureLLMInferenceTrace_code_1week.csv` },
      { name: "AzureLLMInferenceTrace_conv_1week.csv", url: `${AZURE_2024_BLOB}/AzureLLMInferenceTrace_conv_1week.csv` },
    ],
  },
  {
    name: "mooncake",
    title: "Mooncake (Kimi) traces: conversation and synthetic, with prefix-sharing block hashes",
    format: "mooncake",
    licence: "Apache-2.0",
    source: "Qin et al., Mooncake, USENIX FAST 2025; github.com/kvcache-ai/Mooncake (FAST25-release/traces)",
    files: [
      { name: "conversation_trace.jsonl", url: mooncake("a2a4b18ac537fd798d50e6e9f57031ce86419a37", "conversation_trace.jsonl"), sha256: "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df", bytes: 3_029_533 },
      { name: "synthetic_trace.jsonl", url: mooncake("3cca71daccf2a7afb8fe3f0295358f70e3a69fdb", "synthetic_trace.jsonl"), sha256: "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131", bytes: 1_136_313 },
    ],
  },
  {
    name: "burstgpt",
    title: "BurstGPT: four months of ChatGPT and GPT-4 requests on Azure OpenAI (with and without failed requests)",
    format: "burstgpt",
    // The repository states no licence file beside the data: read its terms there before redistributing.
    licence: "as stated at github.com/HPMLL/BurstGPT",
    source: "Wang et al., BurstGPT, arXiv 2401.17644; github.com/HPMLL/BurstGPT",
    files: [
      { name: "BurstGPT_1.csv", url: burstGpt(BURSTGPT_V1, "BurstGPT_1.csv"), sha256: "4bb3783693d0a435686fbfc885615d2349bd067239079fa4b749f2e679e12122", bytes: 52_283_111 },
      { name: "BurstGPT_2.csv", url: burstGpt(BURSTGPT_V1, "BurstGPT_2.csv"), sha256: "44bf5942b03fca42c01a226a545ad3a750ec62688faecd67b6831c56a8928bf7", bytes: 144_819_209 },
      { name: "BurstGPT_without_fails_1.csv", url: burstGpt(BURSTGPT_V1, "BurstGPT_without_fails_1.csv"), sha256: "a4d068a7113ec0290e74063a1b3447dc6001a30e4298eb313581b71006dda1f4", bytes: 51_429_517 },
      { name: "BurstGPT_without_fails_2.csv", url: burstGpt("1f52bc81aab7392cc30cc10b244396d9480b245d", "BurstGPT_without_fails_2.csv"), sha256: "56193aa9b2bb26128ded43d2d29a960df6bf5af062bcfc9b005f3fcaa4e6e501", bytes: 142_376_815 },
    ],
  },
];
